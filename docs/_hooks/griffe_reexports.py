"""Griffe extension for the API reference: document each object once, where it is defined.

A package whose ``__init__`` re-exports names of its own submodules (``lecturenn.optim`` exports
``sgd`` from ``lecturenn.optim.transforms``, and so on) would otherwise show every such function
twice on its page: once as a member of the package and once in its submodule. The re-exports are
dropped from the package; the names stay importable from it, and the submodule's entry is the one
that cross-references (``[...][lecturenn.optim.transforms.sgd]``) point at.
"""

from __future__ import annotations

import griffe


class DropInternalReexports(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        self._drop(pkg)

    def _drop(self, module: griffe.Module) -> None:
        for name, member in list(module.members.items()):
            if member.is_alias:
                if member.target_path.startswith(module.path + "."):
                    module.del_member(name)
            elif member.is_module:
                self._drop(member)
