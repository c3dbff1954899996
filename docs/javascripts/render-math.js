// Typeset the math that pymdownx.arithmatex (generic mode) leaves in the page:
// <span class="arithmatex">\(...\)</span> inline and <div class="arithmatex">\[...\]</div> display.
// KaTeX is vendored (javascripts/katex/), so this works without any network access.
(function () {
  "use strict";

  function strip(tex) {
    tex = tex.trim();
    for (const [left, right] of [["\\(", "\\)"], ["\\[", "\\]"], ["$$", "$$"], ["$", "$"]]) {
      if (tex.startsWith(left) && tex.endsWith(right)) {
        return tex.slice(left.length, tex.length - right.length);
      }
    }
    return tex;
  }

  function render(root) {
    if (typeof katex === "undefined") {
      return;
    }
    for (const el of root.querySelectorAll(".arithmatex")) {
      if (el.dataset.typeset === "1") {
        continue;
      }
      const display = el.tagName === "DIV";
      katex.render(strip(el.textContent), el, {
        displayMode: display,
        throwOnError: false, // a bad formula shows in red (.katex-error) instead of vanishing
      });
      el.dataset.typeset = "1";
    }
  }

  if (typeof document$ !== "undefined") {
    // Material for MkDocs: runs on the first load and after every instant navigation
    document$.subscribe(function () {
      render(document.body);
    });
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () {
      render(document.body);
    });
  } else {
    render(document.body);
  }
})();
