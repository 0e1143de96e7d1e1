//===- CompactToGPU.cpp - compact ops to GPU kernels ----------------------===//
//
// Outlines every compact op into the kernel(s) of its plan (KernelPlan.h):
// a gpu.func in `gpu.module @compact_kernels` and a gpu.launch_func in place
// of the op. Kernel names are `<function>_<role>` (one compact op per
// function in a kernel library) and each gpu.func records its launch in
// `compact.*` attributes for the kernel library manifest.
//
//===----------------------------------------------------------------------===//

#include "KernelPlan.h"

#include "compact/Conversion/Passes.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/IR/SymbolTable.h"
#include "llvm/ADT/TypeSwitch.h"

namespace mlir::compact {
#define GEN_PASS_DEF_CONVERTCOMPACTTOGPU
#include "compact/Conversion/Passes.h.inc"
} // namespace mlir::compact

using namespace mlir;
using namespace mlir::compact;
using namespace mlir::compact::gpu_lowering;

void gpu_lowering::addTensorMapArg(KernelPlan &plan, LoopBuilder &host, StringRef name,
                                   StringRef of, Value memref, ArrayRef<int64_t> box) {
  OpBuilder &b = host.builder();
  Location loc = host.location();
  MLIRContext *ctx = b.getContext();
  auto type = cast<MemRefType>(memref.getType());
  auto workgroup = gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup);
  auto boxType = MemRefType::get(box, type.getElementType(), MemRefLayoutAttrInterface(),
                                 workgroup);
  auto descriptorType = nvgpu::TensorMapDescriptorType::get(
      ctx, boxType, nvgpu::TensorMapSwizzleKind::SWIZZLE_128B,
      nvgpu::TensorMapL2PromoKind::L2PROMO_256B, nvgpu::TensorMapOOBKind::OOB_ZERO,
      nvgpu::TensorMapInterleaveKind::INTERLEAVE_NONE);
  Value unranked = memref::CastOp::create(
      b, loc, UnrankedMemRefType::get(type.getElementType(), type.getMemorySpace()), memref);
  SmallVector<Value> boxSizes;
  for (int64_t size : box)
    boxSizes.push_back(host.index(size));
  Value descriptor =
      nvgpu::TmaCreateDescriptorOp::create(b, loc, descriptorType, unranked, boxSizes);
  // The kernel takes the map as the pointer the descriptor lowers to.
  Value pointer = UnrealizedConversionCastOp::create(b, loc, LLVM::LLVMPointerType::get(ctx),
                                                     descriptor)
                      .getResult(0);
  plan.args.push_back({name.str(), pointer});
  plan.tensorMaps.push_back({name.str(), of.str(), SmallVector<int64_t, 5>(box)});
}

namespace {

constexpr StringLiteral kModuleName = "compact_kernels";
constexpr StringLiteral kSharedName = "__compact_dynamic_shared";

FailureOr<Plans> planFor(Operation *op, LoopBuilder &host) {
  return TypeSwitch<Operation *, FailureOr<Plans>>(op)
      .Case([&](AppendKVOp o) { return planAppendKV(o, host); })
      .Case([&](PoolKeysOp o) { return planPoolKeys(o, host); })
      .Case([&](DenseTableOp o) { return planDenseTable(o, host); })
      .Case([&](BlockScoresOp o) { return planBlockScores(o, host); })
      .Case([&](SelectBlocksOp o) { return planSelectBlocks(o, host); })
      .Case([&](BlockUnionOp o) { return planBlockUnion(o, host); })
      .Case([&](ChooseExecGroupsOp o) { return planChooseExecGroups(o, host); })
      .Case([&](SelectUnionOp o) { return planSelectUnion(o, host); })
      .Case([&](ScoreSelectUnionOp o) { return planScoreSelectUnion(o, host); })
      .Case([&](PagedAttentionOp o) { return planPagedAttention(o, host); })
      .Default([](Operation *o) -> FailureOr<Plans> {
        return o->emitOpError("has no GPU lowering");
      });
}

/// The kernel module, with the dynamic shared memory every kernel uses (a
/// public external workgroup global: real dynamic shared memory in PTX).
gpu::GPUModuleOp getOrCreateKernelModule(ModuleOp module) {
  if (auto existing = module.lookupSymbol<gpu::GPUModuleOp>(kModuleName))
    return existing;
  OpBuilder b(module.getBodyRegion());
  b.setInsertionPointToEnd(module.getBody());
  auto kernels = gpu::GPUModuleOp::create(b, module.getLoc(), kModuleName);
  b.setInsertionPointToStart(kernels.getBody());
  auto workgroup = gpu::AddressSpaceAttr::get(b.getContext(), gpu::AddressSpace::Workgroup);
  auto type = MemRefType::get({0}, b.getI8Type(), MemRefLayoutAttrInterface(), workgroup);
  memref::GlobalOp::create(b, module.getLoc(), kSharedName, b.getStringAttr("public"), type,
                           Attribute(), /*constant=*/false, b.getI64IntegerAttr(1024));
  return kernels;
}

LogicalResult outline(Operation *op, func::FuncOp func, gpu::GPUModuleOp kernels,
                      SymbolTable &symbols) {
  OpBuilder hostBuilder(op);
  LoopBuilder host(hostBuilder, op->getLoc());
  FailureOr<Plans> plans = planFor(op, host);
  if (failed(plans))
    return failure();
  MLIRContext *ctx = op->getContext();
  for (KernelPlan &plan : *plans) {
    SmallVector<Type> argTypes;
    SmallVector<Value> operands;
    SmallVector<Attribute> argNames;
    for (auto &[name, value] : plan.args) {
      argTypes.push_back(value.getType());
      operands.push_back(value);
      argNames.push_back(StringAttr::get(ctx, name));
    }
    OpBuilder kb(kernels.getBody(), kernels.getBody()->end());
    std::string name = (func.getSymName() + "_" + plan.role).str();
    auto kernel = gpu::GPUFuncOp::create(kb, op->getLoc(), name,
                                         FunctionType::get(ctx, argTypes, {}));
    kernel->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), UnitAttr::get(ctx));
    SmallVector<int32_t, 3> block(plan.block.begin(), plan.block.end());
    kernel.setKnownBlockSizeAttr(DenseI32ArrayAttr::get(ctx, block));
    kernel->setAttr("compact.block", DenseI64ArrayAttr::get(ctx, plan.block));
    kernel->setAttr("compact.grid", StringAttr::get(ctx, plan.gridRule));
    kernel->setAttr("compact.arg_names", ArrayAttr::get(ctx, argNames));
    kernel->setAttr("compact.shared_memory",
                    DenseI64ArrayAttr::get(ctx, {plan.shared.fixed, plan.shared.perBlock,
                                                 plan.shared.perWord}));
    if (!plan.tensorMaps.empty()) {
      SmallVector<NamedAttribute> maps;
      for (const KernelPlan::TensorMap &map : plan.tensorMaps)
        maps.push_back(NamedAttribute(
            StringAttr::get(ctx, map.name),
            DictionaryAttr::get(ctx, {NamedAttribute(StringAttr::get(ctx, "of"),
                                                     StringAttr::get(ctx, map.of)),
                                      NamedAttribute(StringAttr::get(ctx, "box"),
                                                     DenseI64ArrayAttr::get(ctx, map.box))})));
      kernel->setAttr("compact.tensor_maps", DictionaryAttr::get(ctx, maps));
    }
    if (plan.clusterBlocks > 1)
      kernel->setAttr("compact.cluster_blocks",
                      IntegerAttr::get(IntegerType::get(ctx, 64), plan.clusterBlocks));
    if (plan.minBlocksPerMultiprocessor > 0)
      kernel->setAttr("nvvm.minctasm",
                      IntegerAttr::get(IntegerType::get(ctx, 32), plan.minBlocksPerMultiprocessor));
    symbols.insert(kernel);

    OpBuilder body = OpBuilder::atBlockBegin(&kernel.getBody().front());
    GpuBuilder gb(body, op->getLoc());
    auto workgroup = gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup);
    Value shared = memref::GetGlobalOp::create(
        body, op->getLoc(),
        MemRefType::get({0}, body.getI8Type(), MemRefLayoutAttrInterface(), workgroup),
        kSharedName);
    plan.body(gb, kernel.getArguments(), shared);
    gpu::ReturnOp::create(body, op->getLoc());


    gpu::KernelDim3 grid{plan.grid[0], plan.grid[1], plan.grid[2]};
    gpu::KernelDim3 threads{host.index(plan.block[0]), host.index(plan.block[1]),
                            host.index(plan.block[2])};
    Value bytes = host.index(plan.shared.fixed);
    if (plan.shared.perBlock || plan.shared.perWord) {
      Value kb = plan.blockCapacity;
      bytes = host.add(bytes, host.mul(kb, host.index(plan.shared.perBlock)));
      bytes = host.add(bytes, host.mul(host.ceilDiv(kb, host.index(32)),
                                       host.index(plan.shared.perWord)));
    }
    Value sharedBytes =
        arith::IndexCastOp::create(hostBuilder, op->getLoc(), hostBuilder.getI32Type(), bytes);
    gpu::LaunchFuncOp::create(hostBuilder, op->getLoc(), kernel, grid, threads, sharedBytes,
                              operands);
  }
  op->erase();
  return success();
}

struct ConvertCompactToGPUPass
    : compact::impl::ConvertCompactToGPUBase<ConvertCompactToGPUPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<std::pair<Operation *, func::FuncOp>> work;
    module.walk([&](func::FuncOp func) {
      func.walk([&](Operation *op) {
        if (isa<CompactDialect>(op->getDialect()))
          work.push_back({op, func});
      });
    });
    if (work.empty())
      return;
    module->setAttr(gpu::GPUDialect::getContainerModuleAttrName(), UnitAttr::get(&getContext()));
    gpu::GPUModuleOp kernels = getOrCreateKernelModule(module);
    SymbolTable symbols(kernels);
    for (auto [op, func] : work)
      if (failed(outline(op, func, kernels, symbols)))
        return signalPassFailure();
  }
};

} // namespace
