//===- LoopBuilder.h - terse IR construction for lowerings ------*- C++ -*-===//
//
// The lowerings build loop nests of index and float arithmetic; this wrapper
// keeps that code close to the reference loops it mirrors. SeqGeometryIR is
// compact::SeqGeometry (Reference/Geometry.h) emitted as IR.
//
//===----------------------------------------------------------------------===//

#ifndef COMPACT_CONVERSION_LOOPBUILDER_H
#define COMPACT_CONVERSION_LOOPBUILDER_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/Builders.h"

namespace mlir::compact {

class LoopBuilder {
public:
  LoopBuilder(OpBuilder &builder, Location loc) : b(builder), loc(loc) {}

  OpBuilder &builder() { return b; }
  Location location() const { return loc; }

  // Constants.
  Value index(int64_t v);
  Value i32(int32_t v);
  Value i8(int8_t v);
  Value boolean(bool v);
  Value f32(float v);
  Value f64(double v);
  Value negInf(Type floatType);

  // Index arithmetic (operands are non-negative).
  Value add(Value a, Value c);
  Value sub(Value a, Value c);
  Value mul(Value a, Value c);
  Value div(Value a, Value c);
  Value rem(Value a, Value c);
  Value ceilDiv(Value a, Value c);
  Value min(Value a, Value c);
  Value max(Value a, Value c);
  Value cmp(arith::CmpIPredicate pred, Value a, Value c);
  Value andI(Value a, Value c);
  Value orI(Value a, Value c);
  Value notI(Value a); // of an i1
  Value toIndex(Value intValue);
  Value toI32(Value indexValue);
  /// max(x, 0) of an i32 read from memory: a negative id or count in bad
  /// input must not become a huge index or trip count.
  Value nonNegative(Value i32Value);

  // Floating point, with optional fast-math flags.
  Value addF(Value a, Value c, arith::FastMathFlags fm = {});
  Value subF(Value a, Value c, arith::FastMathFlags fm = {});
  Value mulF(Value a, Value c, arith::FastMathFlags fm = {});
  Value divF(Value a, Value c);
  Value maxF(Value a, Value c);
  Value cmpF(arith::CmpFPredicate pred, Value a, Value c);
  Value exp(Value a);
  Value log(Value a);
  Value extF(Value a, Type to);
  Value truncF(Value a, Type to);
  /// `a` converted to `to` (extension, truncation or nothing).
  Value castF(Value a, Type to);
  Value select(Value cond, Value a, Value c);

  // Vectors (the CPU lowering vectorises over the head dim).
  Value loadVector(Value memref, ValueRange indices, VectorType type, int64_t alignment = 0);
  void storeVector(Value vector, Value memref, ValueRange indices, int64_t alignment = 0);
  Value broadcast(Value scalar, VectorType type);
  Value fma(Value a, Value c, Value acc);
  /// sum of the elements of `vector` (may be reassociated).
  Value reduceAdd(Value vector);

  Value load(Value memref, ValueRange indices);
  void store(Value value, Value memref, ValueRange indices);
  Value dim(Value memref, int64_t d);

  /// scf.for over [lb, ub) by `step`.
  void forLoop(Value lb, Value ub, Value step,
               function_ref<void(LoopBuilder &, Value)> body);
  void forLoop(Value lb, Value ub, function_ref<void(LoopBuilder &, Value)> body) {
    forLoop(lb, ub, index(1), body);
  }
  /// scf.for with loop-carried values; `body` returns the next values.
  SmallVector<Value> forLoop(
      Value lb, Value ub, ValueRange inits,
      function_ref<SmallVector<Value>(LoopBuilder &, Value, ValueRange)> body);
  /// memref.alloca_scope around `body`: scratch buffers allocated inside are
  /// released when it ends (allocas in loops would grow the stack).
  void allocaScope(function_ref<void(LoopBuilder &)> body);
  /// A scratch buffer (memref.alloca) of `shape` (dynamic sizes from `sizes`).
  Value scratch(ArrayRef<int64_t> shape, Type elementType, ValueRange sizes = {});
  /// scf.if without results.
  void ifThen(Value cond, function_ref<void(LoopBuilder &)> body);
  /// scf.if yielding one value.
  Value ifThenElse(Value cond, Type type,
                   function_ref<Value(LoopBuilder &)> thenBody,
                   function_ref<Value(LoopBuilder &)> elseBody);

private:
  OpBuilder &b;
  Location loc;
};

/// One sequence at one chunk step, as IR values (see SeqGeometry).
struct SeqGeometryIR {
  Value ctxLen, chunkLen, prefixLen, numBlocks, firstChunkBlock;
  int64_t blockSize;

  static SeqGeometryIR build(LoopBuilder &lb, Value ctxLen, Value chunkLen,
                             int64_t blockSize);
  Value queryBlockBegin(LoopBuilder &lb, Value qb) const;
  Value queryBlockEnd(LoopBuilder &lb, Value qb) const;
  Value lastVisibleBlock(LoopBuilder &lb, Value qb) const;
  Value blockBegin(LoopBuilder &lb, Value kb) const;
  Value blockEnd(LoopBuilder &lb, Value kb) const;
  /// First chunk row that sees block `kb` whole (FlashPrefill scoring).
  Value firstScoringRow(LoopBuilder &lb, Value kb) const;
};

/// The rows of a block table as IR values (see TableRows): `perGroup` = T =
/// (table rows) / (execution groups), 1 or Qb.
struct TableRowsIR {
  Value perGroup, perQueryBlock;

  static TableRowsIR build(LoopBuilder &lb, Value tableRows, Value groups);
  Value group(LoopBuilder &lb, Value row) const;
  /// Query blocks [first, end) that row `row` serves, of `queryBlocks`.
  Value firstQueryBlock(LoopBuilder &lb, Value row) const;
  Value endQueryBlock(LoopBuilder &lb, Value row, Value queryBlocks) const;
  /// The row of group `e` that serves query block `qb`.
  Value rowOf(LoopBuilder &lb, Value e, Value qb) const;
  /// The chunk blocks that row `row` always holds, [begin, end): from the
  /// block of its first query row's position to its last visible block.
  Value chunkBlocksBegin(LoopBuilder &lb, const SeqGeometryIR &g, Value row) const;
  Value chunkBlocksEnd(LoopBuilder &lb, const SeqGeometryIR &g, Value row,
                       Value queryBlocks) const;
};

} // namespace mlir::compact

#endif // COMPACT_CONVERSION_LOOPBUILDER_H
