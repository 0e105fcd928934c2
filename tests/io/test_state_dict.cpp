// Tests of ostrov::io::load_state_dict / save_state_dict against Python's torch.save/torch.load.
//
// Fixtures are made at test time by Debian's Python torch (/usr/bin/python3; the python3 first
// on PATH may lack torch). Next to each file, Python dumps every tensor it saved (flattened like
// ostrov does) as raw bytes plus a manifest of names, dtypes and shapes, so values are compared
// bit for bit.

// <torch/types.h> first: <torch/ordered_dict.h> (via state_dict.h) uses TORCH_CHECK unincluded.
#include <torch/types.h>

#include "catch.h"
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "ostrov/core/error.h"
#include "ostrov/io/state_dict.h"

namespace {

namespace fs = std::filesystem;
using ostrov::io::load_state_dict;
using ostrov::io::save_state_dict;
using ostrov::io::StateDict;

/// A fresh directory under the system temp folder, removed with everything in it at scope end.
class TempDir {
 public:
  TempDir() {
    std::mt19937_64 rng(
        std::random_device{}() ^
        static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
    for (int attempt = 0; attempt < 100; ++attempt) {
      fs::path p = fs::temp_directory_path() / ("ostrov_test_state_dict_" + std::to_string(rng()));
      if (fs::create_directory(p)) {
        path_ = p;
        return;
      }
    }
    FAIL("cannot create a temporary directory");
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  fs::path operator/(const std::string& name) const { return path_ / name; }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in.good());
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

// Python helpers prepended to every script: dump(d, out) writes out/manifest.tsv
// ("name\tdtype\tshape" per tensor, nested dicts flattened with dots as ostrov does) and
// out/<i>.bin (the tensor's bytes in contiguous order).
const char* const kPythonPrelude = R"PY(
import collections, os, sys, zipfile
import torch

def dump(d, out):
    os.makedirs(out, exist_ok=True)
    lines = []
    def walk(obj, prefix):
        for k, v in obj.items():
            name = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, torch.Tensor):
                raw = v.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
                raw.tofile(os.path.join(out, f"{len(lines)}.bin"))
                lines.append("\t".join([name, str(v.dtype), " ".join(str(s) for s in v.shape)]))
            elif isinstance(v, dict):
                walk(v, name)
    walk(d, "")
    with open(os.path.join(out, "manifest.tsv"), "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))

def rewrite_zip(src, dst, change):
    """Copies the zip src to dst, passing each record's bytes through change(name, data)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, change(info.filename, zin.read(info.filename)))
)PY";

/// Runs `body` (after the prelude) with /usr/bin/python3 and `args`; fails with its output.
void run_python(const TempDir& dir, const std::string& body, const std::vector<fs::path>& args) {
  static int counter = 0;
  const fs::path script = dir / ("script_" + std::to_string(counter++) + ".py");
  const fs::path log = dir / "python.log";
  write_file(script, std::string(kPythonPrelude) + body);
  std::string cmd = "/usr/bin/python3 '" + script.string() + "'";
  for (const auto& a : args) cmd += " '" + a.string() + "'";
  cmd += " > '" + log.string() + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  if (rc != 0) {
    FAIL("python failed (status " << rc << "): " << cmd << "\n" << read_file(log));
  }
}

struct Expected {
  std::string name;
  std::string dtype;  // Python's spelling, e.g. "torch.float32"
  std::vector<int64_t> shape;
  std::string bytes;  // contiguous
};

std::vector<Expected> read_manifest(const fs::path& dir) {
  std::ifstream in(dir / "manifest.tsv");
  REQUIRE(in.good());
  std::vector<Expected> out;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    Expected e;
    std::string shape;
    std::getline(fields, e.name, '\t');
    std::getline(fields, e.dtype, '\t');
    std::getline(fields, shape);
    std::istringstream dims(shape);
    for (int64_t d = 0; dims >> d;) e.shape.push_back(d);
    e.bytes = read_file(dir / (std::to_string(out.size()) + ".bin"));
    out.push_back(std::move(e));
  }
  return out;
}

std::string python_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return "torch.float32";
    case at::kDouble:
      return "torch.float64";
    case at::kHalf:
      return "torch.float16";
    case at::kBFloat16:
      return "torch.bfloat16";
    case at::kLong:
      return "torch.int64";
    case at::kInt:
      return "torch.int32";
    case at::kShort:
      return "torch.int16";
    case at::kChar:
      return "torch.int8";
    case at::kByte:
      return "torch.uint8";
    case at::kBool:
      return "torch.bool";
    default:
      return std::string("unexpected ") + c10::toString(t);
  }
}

std::string tensor_bytes(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), c.nbytes());
}

std::vector<Expected> expected_from(const StateDict& sd) {
  std::vector<Expected> out;
  for (const auto& item : sd) {
    out.push_back({item.key(), python_dtype(item.value().scalar_type()), item.value().sizes().vec(),
                   tensor_bytes(item.value())});
  }
  return out;
}

/// Names in order, dtypes, shapes and bytes of `sd` equal `want`.
void check_equal(const StateDict& sd, const std::vector<Expected>& want) {
  REQUIRE(sd.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    const auto& item = sd[i];
    INFO("tensor " << i << " '" << want[i].name << "'");
    CHECK(item.key() == want[i].name);
    CHECK(python_dtype(item.value().scalar_type()) == want[i].dtype);
    CHECK(item.value().sizes().vec() == want[i].shape);
    CHECK(item.value().device().is_cpu());
    CHECK(tensor_bytes(item.value()) == want[i].bytes);
  }
}

std::vector<std::string> keys_of(const StateDict& sd) {
  std::vector<std::string> keys;
  for (const auto& item : sd) keys.push_back(item.key());
  return keys;
}

// Both macros: the type, then the message.
#define OSTROV_REQUIRE_IO_ERROR(expr, matcher) \
  do {                                         \
    REQUIRE_THROWS_AS(expr, ostrov::IoError);  \
    REQUIRE_THROWS_WITH(expr, matcher);        \
  } while (false)

}  // namespace

TEST_CASE("load_state_dict reads an OrderedDict state_dict exactly", "[io][state_dict]") {
  TempDir dir;
  const fs::path file = dir / "model.pt";
  run_python(dir, R"PY(
torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
m.train()
m(torch.randn(2, 3, 8, 8))  # moves the running statistics and num_batches_tracked
sd = m.state_dict()
assert type(sd) is collections.OrderedDict
torch.save(sd, sys.argv[1])
dump(sd, sys.argv[2])
)PY",
             {file, dir / "expected"});

  const StateDict sd = load_state_dict(file.string());
  check_equal(sd, read_manifest(dir / "expected"));
  CHECK(keys_of(sd) == std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias",
                                                "1.running_mean", "1.running_var",
                                                "1.num_batches_tracked"});
  CHECK(sd["0.weight"].sizes().vec() == std::vector<int64_t>{4, 3, 3, 3});
  CHECK(sd["0.weight"].scalar_type() == at::kFloat);
  const at::Tensor& tracked = sd["1.num_batches_tracked"];
  CHECK(tracked.scalar_type() == at::kLong);
  CHECK(tracked.dim() == 0);
  CHECK(tracked.item<int64_t>() == 1);
}

TEST_CASE("load_state_dict flattens nested dicts and keeps views of one storage",
          "[io][state_dict]") {
  TempDir dir;
  const fs::path p2 = dir / "nested.pt";
  const fs::path p4 = dir / "nested_protocol4.pt";
  run_python(dir, R"PY(
x = torch.arange(12.0).reshape(3, 4)
base = torch.arange(10)
d = {
    "a": {"t": x.t(), "v": x.view(-1)[2:6]},
    "n": 3, "s": "hi", "f": 1.5, "l": [1, 2], "big": 2**70, "none": None,
    "w": x,
    "opt": {0: {"m": base[3:7]}, "lr": 0.1},
    "p": torch.nn.Parameter(torch.ones(2)),
}
assert type(d) is dict
torch.save(d, sys.argv[1])
torch.save(d, sys.argv[2], pickle_protocol=4)  # FRAME, STACK_GLOBAL, MEMOIZE, SHORT_BINUNICODE
dump(d, sys.argv[3])
)PY",
             {p2, p4, dir / "expected"});
  const std::vector<Expected> expected = read_manifest(dir / "expected");

  for (const fs::path& file : {p2, p4}) {
    INFO(file.string());
    const StateDict sd = load_state_dict(file.string());
    check_equal(sd, expected);
    REQUIRE(keys_of(sd) == std::vector<std::string>{"a.t", "a.v", "w", "opt.0.m", "p"});

    const at::Tensor& t = sd["a.t"];
    const at::Tensor& v = sd["a.v"];
    const at::Tensor& w = sd["w"];
    CHECK(t.strides().vec() == std::vector<int64_t>{1, 4});
    CHECK_FALSE(t.is_contiguous());
    CHECK(v.storage_offset() == 2);
    CHECK(t.is_alias_of(w));
    CHECK(v.is_alias_of(w));
    CHECK(sd["opt.0.m"].storage_offset() == 3);
    CHECK(sd["opt.0.m"].storage().nbytes() == 10 * sizeof(int64_t));
    CHECK_FALSE(sd["p"].requires_grad());

    // One storage: a write through w shows through the transposed view.
    w.data_ptr<float>()[1] = 100.0F;  // w[0][1]
    CHECK(t[1][0].item<float>() == 100.0F);
  }
}

TEST_CASE("load_state_dict keeps every dtype", "[io][state_dict]") {
  TempDir dir;
  const fs::path file = dir / "dtypes.pt";
  run_python(dir, R"PY(
torch.manual_seed(1)
d = {
    "bool": torch.tensor([True, False, True]),
    "half": torch.randn(2, 3).half(),
    "bfloat16": torch.randn(4).bfloat16(),
    "float64": torch.randn(3, dtype=torch.float64),
    "int32": torch.arange(-3, 3, dtype=torch.int32),
    "int16": torch.tensor([-300, 7], dtype=torch.int16),
    "int8": torch.tensor([-128, 127], dtype=torch.int8),
    "uint8": torch.tensor([0, 255], dtype=torch.uint8),
    "int64": torch.tensor([-(2**40), 2**62]),
    "scalar": torch.tensor(2.5),
    "empty": torch.zeros(0, 3),
}
torch.save(d, sys.argv[1])
dump(d, sys.argv[2])
)PY",
             {file, dir / "expected"});

  const StateDict sd = load_state_dict(file.string());
  check_equal(sd, read_manifest(dir / "expected"));
  CHECK(sd["bool"].scalar_type() == at::kBool);
  CHECK(sd["half"].scalar_type() == at::kHalf);
  CHECK(sd["bfloat16"].scalar_type() == at::kBFloat16);
  CHECK(sd["int32"].scalar_type() == at::kInt);
  CHECK(sd["uint8"].scalar_type() == at::kByte);
  CHECK(sd["int64"][1].item<int64_t>() == (int64_t{1} << 62));
  CHECK(sd["scalar"].dim() == 0);
  CHECK(sd["scalar"].item<float>() == 2.5F);
  CHECK(sd["empty"].numel() == 0);
}

TEST_CASE("save_state_dict writes what Python's torch.load reads", "[io][state_dict]") {
  TempDir dir;
  const fs::path file = dir / "saved.pt";
  StateDict sd;
  sd.insert("conv.weight", torch::randn({4, 3, 3, 3}));
  sd.insert("bn.num_batches_tracked", torch::scalar_tensor(7, torch::kLong));
  sd.insert("mask", torch::arange(6).remainder(2).eq(0));
  sd.insert("half", torch::randn({2, 2}).to(torch::kHalf));
  sd.insert("bfloat16", torch::randn({3}).to(torch::kBFloat16));
  sd.insert("transposed", torch::arange(12, torch::kFloat).reshape({3, 4}).t());
  sd.insert("slice", torch::arange(10, torch::kLong).slice(0, 2, 8, 2));
  sd.insert("empty", torch::zeros({0, 5}));
  sd.insert("int32", torch::arange(-2, 3, torch::kInt));
  sd.insert("param", torch::ones({2}).requires_grad_());
  sd.insert("unicode.ключ", torch::full({1}, 3.0, torch::kDouble));
  const std::vector<Expected> expected = expected_from(sd);

  save_state_dict(sd, file.string());

  SECTION("ostrov reads it back") { check_equal(load_state_dict(file.string()), expected); }

  SECTION("Python reads it back") {
    run_python(dir, R"PY(
d = torch.load(sys.argv[1])
assert isinstance(d, dict), type(d)
for k, v in d.items():
    assert type(v) is torch.Tensor and not v.requires_grad, (k, type(v))
dump(d, sys.argv[2])
)PY",
               {file, dir / "python"});
    check_equal(sd, read_manifest(dir / "python"));
  }

  SECTION("an empty state dict") {
    const fs::path empty = dir / "empty.pt";
    save_state_dict(StateDict(), empty.string());
    CHECK(load_state_dict(empty.string()).is_empty());
    run_python(dir, "d = torch.load(sys.argv[1])\nassert d == {}, d\n", {empty});
  }

  SECTION("an undefined tensor is an error naming its key") {
    StateDict bad;
    bad.insert("broken", at::Tensor());
    OSTROV_REQUIRE_IO_ERROR(save_state_dict(bad, (dir / "bad.pt").string()),
                            Catch::Contains("broken"));
  }
}

TEST_CASE("load_state_dict explains what is wrong with a file", "[io][state_dict]") {
  TempDir dir;
  const fs::path good = dir / "good.pt";
  run_python(dir, R"PY(
good, legacy, tensor, device, short_pickle, short_record, script = sys.argv[1:8]
d = {"w": torch.arange(64.0), "b": torch.ones(3)}
torch.save(d, good)
torch.save(d, legacy, _use_new_zipfile_serialization=False)
torch.save(torch.zeros(3), tensor)
torch.save({"dev": torch.device("cpu"), "w": torch.ones(2)}, device)
rewrite_zip(good, short_pickle,
            lambda name, data: data[: len(data) // 2] if name.endswith("/data.pkl") else data)
rewrite_zip(good, short_record,
            lambda name, data: data[: len(data) // 2] if name.endswith("/data/0") else data)
torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), script)
)PY",
             {good, dir / "legacy.pt", dir / "tensor.pt", dir / "device.pt",
              dir / "short_pickle.pt", dir / "short_record.pt", dir / "script.pt"});
  REQUIRE(load_state_dict(good.string()).size() == 2);

  {  // missing file
    const std::string p = (dir / "missing.pt").string();
    OSTROV_REQUIRE_IO_ERROR(load_state_dict(p),
                            Catch::Contains(p) && Catch::Contains("no such file"));
  }
  {  // a directory
    OSTROV_REQUIRE_IO_ERROR(load_state_dict(dir.path().string()),
                            Catch::Contains(dir.path().string()));
  }
  {  // truncated zip
    const std::string bytes = read_file(good);
    const std::string p = (dir / "truncated.pt").string();
    write_file(p, bytes.substr(0, bytes.size() / 2));
    OSTROV_REQUIRE_IO_ERROR(load_state_dict(p), Catch::Contains(p));
  }
  {  // text file
    const std::string p = (dir / "notes.txt").string();
    write_file(p, "hello, world\n");
    OSTROV_REQUIRE_IO_ERROR(load_state_dict(p),
                            Catch::Contains(p) && Catch::Contains("unknown format"));
  }
  {  // empty file
    const std::string p = (dir / "empty.pt").string();
    write_file(p, "");
    OSTROV_REQUIRE_IO_ERROR(load_state_dict(p), Catch::Contains(p));
  }
  {  // legacy format says how to re-save
    const std::string p = (dir / "legacy.pt").string();
    OSTROV_REQUIRE_IO_ERROR(load_state_dict(p),
                            Catch::Contains(p) && Catch::Contains("legacy") &&
                                Catch::Contains("re-save") &&
                                Catch::Contains("torch.save(torch.load(p), p)"));
  }
  {  // top level not a dict
    const std::string p = (dir / "tensor.pt").string();
    OSTROV_REQUIRE_IO_ERROR(load_state_dict(p), Catch::Contains(p) && Catch::Contains("dict"));
  }
  {  // unknown global
    const std::string p = (dir / "device.pt").string();
    OSTROV_REQUIRE_IO_ERROR(load_state_dict(p),
                            Catch::Contains(p) && Catch::Contains("torch.device"));
  }
  {  // truncated pickle inside a valid zip
    const std::string p = (dir / "short_pickle.pt").string();
    OSTROV_REQUIRE_IO_ERROR(load_state_dict(p), Catch::Contains(p) && Catch::Contains("data.pkl"));
  }
  {  // truncated tensor record
    const std::string p = (dir / "short_record.pt").string();
    OSTROV_REQUIRE_IO_ERROR(load_state_dict(p), Catch::Contains(p) && Catch::Contains("data/0"));
  }
  {  // TorchScript archive
    const std::string p = (dir / "script.pt").string();
    OSTROV_REQUIRE_IO_ERROR(load_state_dict(p),
                            Catch::Contains(p) && Catch::Contains("TorchScript"));
  }
}
