//===- CompactOps.h - compact dialect operations ----------------*- C++ -*-===//

#ifndef COMPACT_DIALECT_COMPACT_IR_COMPACTOPS_H
#define COMPACT_DIALECT_COMPACT_IR_COMPACTOPS_H

#include "compact/Dialect/Compact/IR/CompactDialect.h"
#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "compact/Dialect/Compact/IR/CompactEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "compact/Dialect/Compact/IR/CompactAttrs.h.inc"

#define GET_OP_CLASSES
#include "compact/Dialect/Compact/IR/CompactOps.h.inc"

#endif // COMPACT_DIALECT_COMPACT_IR_COMPACTOPS_H
