//===- compact-run.cpp - run a chunked prefill through the CPU backend ----===//
//
// Compiles the chunk-step program (compact -> scf -> LLVM, JIT) for the
// configured shapes, feeds it the standard "planted retrieval" workload chunk
// by chunk, and reports per chunk the selection densities, the table sizes
// and the error of the compact output against dense attention and against
// the fp64 reference restricted to the union. Tables are also checked
// against the C++ reference (bit-identical) and fused against unfused.
//
//===----------------------------------------------------------------------===//

#include "compact/CpuRunner/CpuProgram.h"
#include "compact/Reference/Workload.h"

#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>
#include <future>
#include <cmath>

using namespace compact;
using namespace compact::cpu;
namespace cl = llvm::cl;

static cl::OptionCategory category("compact-run options");
static cl::opt<int64_t> contextLen("context", cl::desc("prompt length per sequence"),
                                   cl::init(4096), cl::cat(category));
static cl::opt<int64_t> chunkLen("chunk", cl::desc("chunk length"), cl::init(512),
                                 cl::cat(category));
static cl::opt<int64_t> batch("batch", cl::desc("sequences"), cl::init(1), cl::cat(category));
static cl::opt<int64_t> qHeads("q-heads", cl::desc("query heads"), cl::init(16),
                               cl::cat(category));
static cl::opt<int64_t> kvHeads("kv-heads", cl::desc("KV heads"), cl::init(4), cl::cat(category));
static cl::opt<int64_t> headDim("head-dim", cl::desc("head dim"), cl::init(128),
                                cl::cat(category));
static cl::opt<int64_t> pageSize("page-size", cl::desc("KV page size"), cl::init(64),
                                 cl::cat(category));
static cl::opt<int64_t> blockSize("block-size", cl::desc("selection block size"),
                                  cl::init(128), cl::cat(category));
static cl::opt<int64_t> execGroup("exec-group",
                                  cl::desc("execution group size s (0: G = q-heads / kv-heads)"),
                                  cl::init(0), cl::cat(category));
static cl::opt<float> alpha("alpha", cl::desc("FlashPrefill threshold"), cl::init(0.06f),
                            cl::cat(category));
static cl::opt<int64_t> sink("sink", cl::desc("sink blocks"), cl::init(2), cl::cat(category));
static cl::opt<int64_t> window("window", cl::desc("recent blocks"), cl::init(4),
                               cl::cat(category));
static cl::opt<std::string> layoutName("layout", cl::desc("KV cache layout: nhd or hnd"),
                                       cl::init("nhd"), cl::cat(category));
static cl::opt<std::string> dtypeName("dtype", cl::desc("data type: f32 or bf16"),
                                      cl::init("f32"), cl::cat(category));
static cl::opt<uint64_t> seed("seed", cl::desc("workload seed"), cl::init(2026),
                              cl::cat(category));
static cl::opt<double> hotFrac("hot-frac", cl::desc("planted blocks per head"), cl::init(0.04),
                               cl::cat(category));
static cl::opt<float> signal("signal", cl::desc("planted signal strength"), cl::init(8.0f),
                             cl::cat(category));
static cl::opt<bool> printIR("print-ir", cl::desc("print the chunk-step program and exit"),
                             cl::init(false), cl::cat(category));
static cl::opt<std::string> jsonPath("json", cl::desc("write the report as JSON here"),
                                     cl::init(""), cl::cat(category));

namespace {

[[noreturn]] void fail(const llvm::Twine &message) {
  llvm::errs() << "compact-run: error: " << message << "\n";
  std::exit(1);
}

void check(llvm::Error error, const char *what) {
  if (error)
    fail(llvm::Twine(what) + ": " + llvm::toString(std::move(error)));
}

double seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

/// Validates the options against each other; each message names the option.
ProgramConfig makeConfig() {
  auto require = [](bool ok, const llvm::Twine &message) {
    if (!ok)
      fail(message);
  };
  require(contextLen > 0, "--context must be positive");
  require(chunkLen > 0, "--chunk must be positive");
  require(batch > 0, "--batch must be positive");
  require(kvHeads > 0 && qHeads > 0 && qHeads % kvHeads == 0,
          "--q-heads must be a positive multiple of --kv-heads");
  require(headDim > 0, "--head-dim must be positive");
  require(pageSize > 0 && blockSize > 0 && blockSize % pageSize == 0,
          "--block-size must be a positive multiple of --page-size");
  int64_t g = qHeads / kvHeads;
  int64_t s = execGroup == 0 ? g : int64_t(execGroup);
  require(s > 0 && g % s == 0,
          llvm::formatv("--exec-group must divide q-heads / kv-heads = {0}, got {1}", g, s));
  require(alpha > 0 && alpha <= 1, "--alpha must be in (0, 1]");
  require(sink >= 0 && window >= 0, "--sink and --window must be non-negative");
  require(layoutName == "nhd" || layoutName == "hnd", "--layout must be nhd or hnd");
  require(dtypeName == "f32" || dtypeName == "bf16", "--dtype must be f32 or bf16");
  ProgramConfig c;
  c.qHeads = qHeads;
  c.kvHeads = kvHeads;
  c.headDim = headDim;
  c.pageSize = pageSize;
  c.blockSize = blockSize;
  c.execGroupSize = s;
  c.layout = layoutName == "nhd" ? ref::KVLayout::NHD : ref::KVLayout::HND;
  c.dtype = dtypeName == "f32" ? DataType::F32 : DataType::BF16;
  c.selection = {ref::ThresholdMode::RowMaxLog, alpha, sink, window};
  return c;
}

/// The C++ reference of one chunk step (selection from its own pooled keys,
/// attention over its own tables).
struct ReferenceStep {
  std::vector<uint8_t> mask;
  std::vector<int32_t> table, counts;
  std::vector<float> out;
};

ReferenceStep runReference(const ref::ChunkShape &shape, const ref::PagedCache &cache,
                           const ProgramConfig &config, const Tensor<int32_t> &lens,
                           const Tensor<int32_t> &pageTable, const Tensor<float> &q,
                           const Tensor<float> &kCache, const Tensor<float> &vCache,
                           std::vector<float> &pooled) {
  const float scale = 1.0f / std::sqrt(float(shape.headDim));
  const size_t rows = size_t(shape.batch) * shape.qHeads * shape.queryBlocks();
  const size_t groups = size_t(shape.batch) * config.groups();
  ReferenceStep step;
  ref::poolKeys(shape, cache, lens.data.data(), pageTable.data.data(), kCache.data.data(),
                pooled.data());
  std::vector<float> scores(rows * shape.blockCapacity);
  ref::blockScores(shape, lens.data.data(), q.data.data(), pooled.data(), scale, scores.data());
  step.mask.resize(scores.size());
  ref::selectBlocks(shape, lens.data.data(), scores.data(), config.selection, step.mask.data());
  step.table.resize(groups * shape.blockCapacity);
  step.counts.resize(groups);
  ref::blockUnion(shape, lens.data.data(), step.mask.data(), config.execGroupSize,
                  step.table.data(), step.counts.data());
  step.out.resize(q.size());
  ref::pagedAttention(shape, cache, lens.data.data(), pageTable.data.data(), q.data.data(),
                      kCache.data.data(), vCache.data.data(), step.table.data(),
                      step.counts.data(), config.execGroupSize, scale, step.out.data(), nullptr);
  return step;
}

} // namespace

int main(int argc, char **argv) {
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(
      argc, argv,
      "compact-run: chunked prefill of the planted-retrieval workload through the "
      "compact CPU backend\n");
  ProgramConfig config = makeConfig();
  if (printIR) {
    llvm::outs() << buildChunkProgram(config);
    return 0;
  }

  const auto start = std::chrono::steady_clock::now();
  auto compiled = CpuProgram::compile(config);
  if (!compiled)
    fail("compiling the chunk program: " + llvm::toString(compiled.takeError()));
  CpuProgram &program = **compiled;
  double compileSeconds = seconds(start);

  // Workload and paged cache.
  const int64_t B = batch, L = contextLen, hq = qHeads, hkv = kvHeads, d = headDim;
  const int64_t bs = blockSize, E = config.groups();
  const int64_t kbCap = ceilDiv(L, bs), maxPages = ceilDiv(L, pageSize);
  ref::PlantedRetrievalConfig workload;
  workload.qHeads = hq;
  workload.kvHeads = hkv;
  workload.headDim = d;
  workload.blockSize = bs;
  workload.hotFrac = hotFrac;
  workload.signal = signal;
  workload.seed = seed;
  ref::Prompt prompt = makePlantedRetrieval(workload, std::vector<int64_t>(B, L));
  if (config.dtype == DataType::BF16) {
    ref::roundToBF16(prompt.q);
    ref::roundToBF16(prompt.k);
    ref::roundToBF16(prompt.v);
  }
  ref::PagedCache cache;
  cache.layout = config.layout;
  cache.pageSize = pageSize;
  cache.kvHeads = hkv;
  cache.headDim = d;
  cache.maxPagesPerSeq = maxPages;
  cache.numPages = B * maxPages + 7;
  Tensor<int32_t> pageTable({B, maxPages});
  if (!ref::makePageTable(std::vector<int64_t>(B, L), pageSize, cache.numPages, maxPages,
                          seed + 1, pageTable.data))
    fail("the page pool is too small");
  std::vector<int64_t> cacheShape =
      config.layout == ref::KVLayout::NHD
          ? std::vector<int64_t>{cache.numPages, pageSize, hkv, d}
          : std::vector<int64_t>{cache.numPages, hkv, pageSize, d};
  Tensor<float> kCache(cacheShape, std::nanf("")), vCache(cacheShape, std::nanf(""));
  Tensor<float> pooled({B, hkv, kbCap, d}, 0.0f);
  std::vector<float> refPooled(pooled.size(), 0.0f);

  llvm::outs() << llvm::formatv(
      "compact-run: B={0} L={1} C={2} Hq={3} Hkv={4} D={5} page={6} block={7} s={8} "
      "alpha={9} sink={10} window={11} layout={12} dtype={13}\n",
      B, L, int64_t(chunkLen), hq, hkv, d, int64_t(pageSize), bs, config.execGroupSize,
      float(alpha), int64_t(sink), int64_t(window), std::string(layoutName),
      std::string(dtypeName));
  llvm::outs() << llvm::formatv("compiled the chunk program in {0:F2} s\n\n", compileSeconds);
  llvm::outs() << llvm::formatv("{0,5} {1,7} {2,6} {3,7} {4,7} {5,16} {6,10} {7,10} {8,7}\n",
                                "chunk", "prefix", "len", "mask%", "union%",
                                "table min/avg/max", "err_dense", "err_union", "time_s");

  llvm::json::Array rows;
  bool allOk = true;
  double worstUnionErr = 0.0;
  for (int64_t begin = 0, step = 0; begin < L; begin += chunkLen, ++step) {
    const auto chunkStart = std::chrono::steady_clock::now();
    const int64_t c = std::min<int64_t>(chunkLen, L - begin), qbs = ceilDiv(c, bs);
    Tensor<int32_t> lens({B}, int32_t(begin + c));
    Tensor<float> q({B, c, hq, d}), kNew({B, c, hkv, d}), vNew({B, c, hkv, d});
    for (int64_t b = 0; b < B; ++b) {
      std::copy_n(prompt.qAt(b, begin), c * hq * d, q.data.begin() + b * c * hq * d);
      std::copy_n(prompt.kAt(b, begin), c * hkv * d, kNew.data.begin() + b * c * hkv * d);
      std::copy_n(prompt.vAt(b, begin), c * hkv * d, vNew.data.begin() + b * c * hkv * d);
    }
    ref::ChunkShape shape{B, c, hq, hkv, d, bs, kbCap};

    // The C++ reference of the same step runs on a second thread (it only
    // reads the cache, which the compiled append has just written).
    check(program.appendAndPool(kNew, vNew, kCache, vCache, pageTable, lens, pooled),
          "append_and_pool");
    std::future<ReferenceStep> reference = std::async(std::launch::async, [&] {
      return runReference(shape, cache, config, lens, pageTable, q, kCache, vCache, refPooled);
    });

    // The compiled chunk step.
    Tensor<float> scores({B, hq, qbs, kbCap});
    Tensor<int8_t> mask({B, hq, qbs, kbCap});
    Tensor<int32_t> table({B, E, kbCap}), counts({B, E});
    check(program.select(q, pooled, lens, scores, mask, table, counts), "select");
    Tensor<int32_t> fusedTable({B, E, kbCap}), fusedCounts({B, E});
    check(program.selectFused(q, pooled, lens, fusedTable, fusedCounts), "select_fused");
    Tensor<float> out({B, c, hq, d}, std::nanf("")), lse({B, hq, c});
    check(program.attention(q, kCache, vCache, pageTable, lens, table, counts, out, lse),
          "attention");
    Tensor<int32_t> denseTable({B, E, kbCap}), denseCounts({B, E});
    ref::fullBlockTable(shape, lens.data.data(), config.execGroupSize, denseTable.data.data(),
                        denseCounts.data.data());
    Tensor<float> denseOut({B, c, hq, d}, std::nanf("")), denseLse({B, hq, c});
    check(program.attention(q, kCache, vCache, pageTable, lens, denseTable, denseCounts,
                            denseOut, denseLse),
          "dense attention");
    ReferenceStep expected = reference.get();
    const std::vector<uint8_t> &refMask = expected.mask;
    const std::vector<int32_t> &refTable = expected.table, &refCounts = expected.counts;
    const std::vector<float> &refOut = expected.out;

    bool tablesMatch = table.data == refTable && counts.data == refCounts &&
                       fusedTable.data == table.data && fusedCounts.data == counts.data &&
                       std::equal(mask.data.begin(), mask.data.end(), refMask.begin(),
                                  [](int8_t a, uint8_t b) { return uint8_t(a) == b; });
    double errDense = ref::relativeError(out.data.data(), denseOut.data.data(), out.size());
    double errUnion = ref::relativeError(out.data.data(), refOut.data(), out.size());
    // Densities: selected / causally valid pairs; kept / existing blocks.
    int64_t selected = 0, valid = 0, kept = 0, existing = 0;
    int32_t minCount = INT32_MAX, maxCount = 0;
    for (int64_t b = 0; b < B; ++b) {
      SeqGeometry g = shape.seq(lens.data.data(), b);
      for (int64_t h = 0; h < hq; ++h)
        for (int64_t qb = 0; qb < qbs; ++qb)
          for (int64_t kb = 0; kb <= g.lastVisibleBlock(qb); ++kb) {
            ++valid;
            selected += mask.data[((b * hq + h) * qbs + qb) * kbCap + kb] != 0;
          }
      for (int64_t e = 0; e < E; ++e) {
        int32_t n = counts.data[b * E + e];
        kept += n;
        existing += g.numBlocks();
        minCount = std::min(minCount, n);
        maxCount = std::max(maxCount, n);
      }
    }
    double maskDensity = double(selected) / double(valid);
    double unionDensity = double(kept) / double(existing);
    double tolerance = config.dtype == DataType::F32 ? 1e-5 : 1e-2;
    bool ok = tablesMatch && errUnion <= tolerance;
    allOk &= ok;
    worstUnionErr = std::max(worstUnionErr, errUnion);
    double elapsed = seconds(chunkStart);
    llvm::outs() << llvm::formatv(
        "{0,5} {1,7} {2,6} {3,7:F1} {4,7:F1} {5,16} {6,10:E2} {7,10:E2} {8,7:F2}{9}\n", step,
        begin, c, 100 * maskDensity, 100 * unionDensity,
        llvm::formatv("{0}/{1:F1}/{2}", minCount, double(kept) / double(B * E), maxCount).str(),
        errDense, errUnion, elapsed,
        tablesMatch ? "" : "  TABLES DIFFER FROM THE REFERENCE");
    rows.push_back(llvm::json::Object{{"chunk", step},
                                      {"prefix", begin},
                                      {"len", c},
                                      {"density_mask", maskDensity},
                                      {"density_union", unionDensity},
                                      {"table_min", minCount},
                                      {"table_max", maxCount},
                                      {"table_mean", double(kept) / double(B * E)},
                                      {"err_vs_dense", errDense},
                                      {"err_vs_union_reference", errUnion},
                                      {"tables_match_reference", tablesMatch},
                                      {"seconds", elapsed}});
  }
  double total = seconds(start);
  llvm::outs() << llvm::formatv(
      "\n{0}: tables bit-identical to the C++ reference (fused and unfused) and attention "
      "within {1:E0} of the fp64 reference restricted to the union (worst {2:E2}); {3:F1} s\n",
      allOk ? "PASS" : "FAIL", config.dtype == DataType::F32 ? 1e-5 : 1e-2, worstUnionErr,
      total);

  if (!jsonPath.empty()) {
    std::error_code ec;
    llvm::raw_fd_ostream os(jsonPath, ec);
    if (ec)
      fail("cannot write --json " + jsonPath + ": " + ec.message());
    os << llvm::formatv("{0:2}", llvm::json::Value(llvm::json::Object{
                                     {"tool", "compact-run"},
                                     {"batch", B},
                                     {"context", L},
                                     {"chunk", int64_t(chunkLen)},
                                     {"exec_group_size", config.execGroupSize},
                                     {"alpha", double(alpha)},
                                     {"pass", allOk},
                                     {"seconds", total},
                                     {"chunks", std::move(rows)}}));
  }
  return allOk ? 0 : 1;
}
