# -*- Python -*-
# lit configuration of the compact tests.

import os

import lit.formats
from lit.llvm import llvm_config

config.name = "COMPACT"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.compact_obj_root, "test")
config.excludes = ["CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py", "Fuzz"]

llvm_config.with_system_environment(["HOME", "INCLUDE", "LIB", "TMP", "TEMP"])
llvm_config.use_default_substitutions()

tool_dirs = [config.compact_tools_dir, config.llvm_tools_dir]
llvm_config.add_tool_substitutions(["compact-opt", "compact-codegen", "FileCheck", "not", "count"], tool_dirs)

# PTX checks run only where the CUDA toolkit is installed.
if config.ptxas and os.path.exists(config.ptxas):
    config.available_features.add("ptxas")
    config.substitutions.append(("%ptxas", config.ptxas))
