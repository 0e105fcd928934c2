#include "catch.h"

#include <zlib.h>

#include <cstdlib>
#include <string>

#include <ATen/ATen.h>

#include "ostrov/core/error.h"
#include "ostrov/data/fashion_mnist.h"
#include "support.h"

using namespace ostrov;
using ostrov::test::TempDir;

namespace {

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) ==
          static_cast<int>(bytes.size()));
  gzclose(f);
}

// An idx3 header for [n,28,28] uint8 followed by `data_bytes` bytes of i % 256.
std::string idx3(uint32_t n, size_t data_bytes, uint8_t type = 0x08) {
  std::string s = {0, 0, static_cast<char>(type), 3};
  for (uint32_t v : {n, 28u, 28u}) {
    s += static_cast<char>(v >> 24);
    s += static_cast<char>(v >> 16);
    s += static_cast<char>(v >> 8);
    s += static_cast<char>(v);
  }
  for (size_t i = 0; i < data_bytes; ++i) s += static_cast<char>(i % 256);
  return s;
}

std::string idx1(const std::string& labels) {
  const auto n = static_cast<uint32_t>(labels.size());
  std::string s = {0, 0, 8, 1, static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                   static_cast<char>(n >> 8), static_cast<char>(n)};
  return s + labels;
}

}  // namespace

TEST_CASE("Fashion-MNIST train split matches numpy's reading of the same gzip files",
          "[data][fashion_mnist]") {
  data::FashionMnist train(data::FashionMnistSplit::kTrain);
  REQUIRE(train.size() == 60000);
  REQUIRE(train.images().sizes() == at::IntArrayRef({60000, 28, 28}));
  REQUIRE(train.images().scalar_type() == at::kByte);
  REQUIRE(train.labels().scalar_type() == at::kLong);

  TempDir dir;
  const auto py = test::run_python(dir, "root = '" + data::FashionMnist::default_root() + "/'" + R"(
import gzip, numpy as np
lab = np.frombuffer(gzip.open(root + 'train-labels-idx1-ubyte.gz').read(), np.uint8, offset=8)
img = np.frombuffer(gzip.open(root + 'train-images-idx3-ubyte.gz').read(), np.uint8, offset=16)
img = img.reshape(-1, 28, 28)
print(len(lab), lab[0], lab[1], lab[59999], int(img[0].sum()), int(img[59999].sum()),
      int(img[0, 14, 14]), int(np.bincount(lab).min()))
)");
  INFO(py.output);
  REQUIRE(py.exit_code == 0);
  std::istringstream in(py.output);
  int64_t n, l0, l1, l_last, s0, s_last, px, min_count;
  in >> n >> l0 >> l1 >> l_last >> s0 >> s_last >> px >> min_count;
  CHECK(n == train.size());
  CHECK(train.label(0) == l0);
  CHECK(train.label(1) == l1);
  CHECK(train.label(59999) == l_last);
  CHECK(train.images()[0].sum().item<int64_t>() == s0);
  CHECK(train.images()[59999].sum().item<int64_t>() == s_last);
  CHECK(train.pixels(0)[14 * 28 + 14] == px);
  CHECK(at::bincount(train.labels()).min().item<int64_t>() == min_count);

  REQUIRE(data::FashionMnist::class_names().size() == 10);
  CHECK(data::FashionMnist::class_names()[0] == "T-shirt/top");
  CHECK(data::FashionMnist::class_names()[9] == "Ankle boot");
  CHECK_THROWS_WITH(train.label(60000), Catch::Contains("60000"));
}

TEST_CASE("Fashion-MNIST test split has 10000 items with all classes", "[data][fashion_mnist]") {
  data::FashionMnist test_split(data::FashionMnistSplit::kTest);
  CHECK(test_split.size() == 10000);
  CHECK(at::bincount(test_split.labels()).numel() == 10);
}

TEST_CASE("read_idx reads gzip and plain idx files", "[data][fashion_mnist]") {
  TempDir dir;
  write_gz(dir / "a.gz", idx3(2, 2 * 784));
  auto t = data::read_idx(dir / "a.gz");
  REQUIRE(t.sizes() == at::IntArrayRef({2, 28, 28}));
  CHECK(t[0][0][5].item<int>() == 5);
  CHECK(t[1][0][0].item<int>() == 784 % 256);
  test::write_bytes(dir / "b.idx", idx1("\x03\x07"));
  auto l = data::read_idx(dir / "b.idx");
  REQUIRE(l.sizes() == at::IntArrayRef({2}));
  CHECK(l[1].item<int>() == 7);
}

TEST_CASE("idx errors name the file: missing, truncated, wrong magic, extra bytes",
          "[data][fashion_mnist]") {
  TempDir dir;
  CHECK_THROWS_AS(data::read_idx(dir / "missing.gz"), IoError);
  CHECK_THROWS_WITH(data::read_idx(dir / "missing.gz"), Catch::Contains("missing.gz"));

  write_gz(dir / "short.gz", idx3(2, 784 + 100));  // data cut inside the second image
  CHECK_THROWS_AS(data::read_idx(dir / "short.gz"), IoError);
  CHECK_THROWS_WITH(data::read_idx(dir / "short.gz"),
                    Catch::Contains("short.gz") && Catch::Contains("truncated"));

  // A gzip stream cut in the middle (the compressed file itself truncated).
  write_gz(dir / "full.gz", idx3(4, 4 * 784));
  const std::string bytes = test::read_bytes(dir / "full.gz");
  test::write_bytes(dir / "cut.gz", bytes.substr(0, bytes.size() / 2));
  CHECK_THROWS_WITH(data::read_idx(dir / "cut.gz"), Catch::Contains("cut.gz"));

  write_gz(dir / "header.gz", std::string("\0\0\x08", 3));
  CHECK_THROWS_WITH(data::read_idx(dir / "header.gz"),
                    Catch::Contains("header.gz") && Catch::Contains("truncated"));

  write_gz(dir / "magic.gz", idx3(1, 784, /*type=*/0x0D));  // float idx
  CHECK_THROWS_WITH(data::read_idx(dir / "magic.gz"),
                    Catch::Contains("magic.gz") && Catch::Contains("wrong magic"));
  write_gz(dir / "text.gz", "hello, not an idx file");
  CHECK_THROWS_WITH(data::read_idx(dir / "text.gz"), Catch::Contains("wrong magic"));

  write_gz(dir / "extra.gz", idx3(1, 785));
  CHECK_THROWS_WITH(data::read_idx(dir / "extra.gz"),
                    Catch::Contains("extra.gz") && Catch::Contains("extra bytes"));
}

TEST_CASE("FashionMnist reads OSTROV_FASHION_MNIST's folder when no root is given",
          "[data][fashion_mnist]") {
  // Restores the variable as it was (run.sh sets it on machines without Debian's package).
  struct Restore {
    const char* old = std::getenv("OSTROV_FASHION_MNIST");
    std::string saved = old != nullptr ? old : "";
    bool had = old != nullptr;
    ~Restore() {
      if (had) {
        setenv("OSTROV_FASHION_MNIST", saved.c_str(), 1);
      } else {
        unsetenv("OSTROV_FASHION_MNIST");
      }
    }
  } restore;
  TempDir dir;
  write_gz(dir / "t10k-images-idx3-ubyte.gz", idx3(2, 2 * 784));
  write_gz(dir / "t10k-labels-idx1-ubyte.gz", idx1("\x03\x07"));
  setenv("OSTROV_FASHION_MNIST", dir.path().c_str(), 1);
  CHECK(data::FashionMnist::default_root() == dir.path().string());
  const data::FashionMnist two(data::FashionMnistSplit::kTest);
  CHECK(two.size() == 2);
  CHECK(two.label(1) == 7);
  CHECK_THROWS_WITH(data::FashionMnist(data::FashionMnistSplit::kTrain),
                    Catch::Contains(dir.path().string()) && Catch::Contains("train-images-idx3-ubyte"));
  setenv("OSTROV_FASHION_MNIST", "", 1);  // empty: Debian's folder
  CHECK(data::FashionMnist::default_root() == data::FashionMnist::kDefaultRoot);
  unsetenv("OSTROV_FASHION_MNIST");
  CHECK(data::FashionMnist::default_root() == data::FashionMnist::kDefaultRoot);
}

TEST_CASE("FashionMnist checks the files of a split against each other", "[data][fashion_mnist]") {
  TempDir dir;
  CHECK_THROWS_WITH(data::FashionMnist(data::FashionMnistSplit::kTest, dir.path().string()),
                    Catch::Contains("t10k-images-idx3-ubyte.gz"));

  write_gz(dir / "t10k-images-idx3-ubyte.gz", idx3(3, 3 * 784));
  write_gz(dir / "t10k-labels-idx1-ubyte.gz", idx1("\x01\x02"));
  CHECK_THROWS_AS(data::FashionMnist(data::FashionMnistSplit::kTest, dir.path().string()),
                  DataError);
  CHECK_THROWS_WITH(data::FashionMnist(data::FashionMnistSplit::kTest, dir.path().string()),
                    Catch::Contains("t10k-labels-idx1-ubyte.gz") && Catch::Contains("2 labels"));

  write_gz(dir / "t10k-labels-idx1-ubyte.gz", idx1("\x01\x02\x0c"));
  CHECK_THROWS_WITH(data::FashionMnist(data::FashionMnistSplit::kTest, dir.path().string()),
                    Catch::Contains("label 12"));

  write_gz(dir / "t10k-labels-idx1-ubyte.gz", idx1("\x01\x02\x09"));
  data::FashionMnist ok(data::FashionMnistSplit::kTest, dir.path().string());
  CHECK(ok.size() == 3);
  CHECK(ok.label(2) == 9);
}
