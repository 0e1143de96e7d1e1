//===- CompactDialect.cpp - the compact dialect ---------------------------===//

#include "compact/Dialect/Compact/IR/CompactDialect.h"
#include "compact/Dialect/Compact/IR/CompactOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::compact;

#include "compact/Dialect/Compact/IR/CompactDialect.cpp.inc"
#include "compact/Dialect/Compact/IR/CompactEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "compact/Dialect/Compact/IR/CompactAttrs.cpp.inc"

void CompactDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "compact/Dialect/Compact/IR/CompactOps.cpp.inc"
      >();
  addAttributes<
#define GET_ATTRDEF_LIST
#include "compact/Dialect/Compact/IR/CompactAttrs.cpp.inc"
      >();
}
