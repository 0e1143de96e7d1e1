//===- compact-codegen.cpp - emit a kernel library ------------------------===//
//
// Compiles every compact op for a list of configurations through
// compact-gpu-pipeline and writes the kernel library an engine links:
//
//   program.mlir        the compact program (one op per function)
//   kernels.ptx         all kernels, one PTX module for the chip
//   kernels.cubin       ptxas -arch=<chip> of it (when ptxas is available)
//   ptxas.log           ptxas -v: registers, spills, shared memory per kernel
//   manifest.json       kernel names, argument layouts, block sizes, grid rules
//   CompactKernels.cpp  the kernel table, for the runtime
//   CompactKernelImage.S  links the image (cubin, else PTX) into the runtime
//
//===----------------------------------------------------------------------===//

#include "compact/Codegen/KernelLibrary.h"

#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/raw_ostream.h"

using namespace compact::codegen;
namespace cl = llvm::cl;

static cl::OptionCategory category("compact-codegen options");
static cl::list<std::string> configs(
    "config",
    cl::desc("a kernel configuration, q<Hq>_kv<Hkv>_d<D>_p<page>_b<block>_<bf16|f16>_<nhd|hnd>"
             "[:s<s>,...] (repeatable; default: the built-in library)"),
    cl::cat(category));
static cl::opt<std::string> outDir("out-dir", cl::desc("where to write the library"),
                                   cl::Required, cl::cat(category));
static cl::opt<std::string> chip("chip", cl::desc("target chip"), cl::init("sm_90a"),
                                 cl::cat(category));
static cl::opt<std::string> ptxas("ptxas", cl::desc("ptxas to assemble the PTX with (empty: "
                                                    "do not assemble)"),
                                  cl::init(""), cl::cat(category));

namespace {
[[noreturn]] void fail(const llvm::Twine &message) {
  llvm::errs() << "compact-codegen: error: " << message << "\n";
  std::exit(1);
}

void write(llvm::StringRef name, llvm::StringRef contents) {
  llvm::SmallString<256> path(outDir);
  llvm::sys::path::append(path, name);
  std::error_code ec;
  llvm::raw_fd_ostream os(path, ec);
  if (ec)
    fail("cannot write " + path + ": " + ec.message());
  os << contents;
}

std::string path(llvm::StringRef name) {
  llvm::SmallString<256> p(outDir);
  llvm::sys::path::append(p, name);
  return std::string(p);
}
} // namespace

int main(int argc, char **argv) {
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(argc, argv, "compact-codegen: emit a kernel library\n");
  std::vector<LibraryConfig> library;
  for (const std::string &text : configs) {
    auto config = parseConfig(text);
    if (!config)
      fail(llvm::toString(config.takeError()));
    library.push_back(*config);
  }
  if (library.empty())
    library = defaultLibrary();
  if (std::error_code ec = llvm::sys::fs::create_directories(outDir))
    fail("cannot create --out-dir " + outDir + ": " + ec.message());

  mlir::compact::GpuPipelineOptions options;
  options.chip = chip;
  auto generated = generateLibrary(library, options);
  if (!generated)
    fail(llvm::toString(generated.takeError()));
  write("program.mlir", generated->program);
  write("kernels.ptx", generated->ptx);

  std::string cubin;
  if (!ptxas.empty()) {
    std::string log = path("ptxas.log"), input = path("kernels.ptx"),
                output = path("kernels.cubin");
    llvm::SmallVector<llvm::StringRef> args = {ptxas, "-arch", chip, "-O3", "-v",
                                               input, "-o", output};
    std::optional<llvm::StringRef> redirects[] = {std::nullopt, llvm::StringRef(log),
                                                  llvm::StringRef(log)};
    std::string message;
    int rc = llvm::sys::ExecuteAndWait(ptxas, args, std::nullopt, redirects, 0, 0, &message);
    if (rc != 0)
      fail("ptxas failed (" + std::to_string(rc) + "): " + message + "; see " + log);
    auto buffer = llvm::MemoryBuffer::getFile(path("kernels.cubin"), /*IsText=*/false);
    if (!buffer)
      fail("cannot read kernels.cubin");
    cubin = (*buffer)->getBuffer().str();
    // Spills in a generated kernel are a code generation bug to look at.
    auto logText = llvm::MemoryBuffer::getFile(log);
    if (logText && (*logText)->getBuffer().contains("bytes spill stores") &&
        !(*logText)->getBuffer().contains("0 bytes spill stores"))
      llvm::errs() << "compact-codegen: warning: ptxas reports spills; see " << log << "\n";
  }
  write("manifest.json", manifestJson(*generated, chip, !cubin.empty()));
  write("CompactKernels.cpp", embeddingSource(*generated, !cubin.empty()));
  write("CompactKernelImage.S", imageAssembly(path(cubin.empty() ? "kernels.ptx" : "kernels.cubin")));
  llvm::outs() << "compact-codegen: " << generated->kernels.size() << " kernels for "
               << library.size() << " configurations -> " << outDir
               << (cubin.empty() ? " (PTX only)" : " (PTX + cubin)") << "\n";
  return 0;
}
