//===- CompactDialect.h - the compact dialect -------------------*- C++ -*-===//

#ifndef COMPACT_DIALECT_COMPACT_IR_COMPACTDIALECT_H
#define COMPACT_DIALECT_COMPACT_IR_COMPACTDIALECT_H

#include "mlir/IR/Dialect.h"

#include "compact/Dialect/Compact/IR/CompactDialect.h.inc"

#endif // COMPACT_DIALECT_COMPACT_IR_COMPACTDIALECT_H
