#include "ostrov/data/fashion_mnist.h"

#include <zlib.h>

#include <cstdlib>
#include <filesystem>
#include <limits>
#include <memory>

#include <ATen/ATen.h>

#include "ostrov/core/error.h"

namespace fs = std::filesystem;

namespace ostrov::data {

namespace {

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

std::string gz_error(gzFile file) {
  int code = Z_OK;
  const char* message = gzerror(file, &code);
  return (code != Z_OK && message != nullptr) ? std::string(": ") + message : std::string();
}

// Reads up to `n` bytes; returns how many were read (less than n at the end of the data).
size_t read_some(gzFile file, const std::string& path, uint8_t* out, size_t n) {
  size_t done = 0;
  while (done < n) {
    const size_t chunk = std::min<size_t>(n - done, 1u << 30);
    const int got = gzread(file, out + done, static_cast<unsigned>(chunk));
    if (got < 0) throw IoError(path + ": cannot read (corrupt gzip data" + gz_error(file) + ")");
    if (got == 0) break;
    done += static_cast<size_t>(got);
  }
  return done;
}

std::string find_file(const std::string& root, const std::string& stem) {
  const fs::path gz = fs::path(root) / (stem + ".gz");
  const fs::path raw = fs::path(root) / stem;
  std::error_code ec;
  if (fs::exists(gz, ec)) return gz.string();
  if (fs::exists(raw, ec)) return raw.string();
  throw IoError(gz.string() + ": no such file (Fashion-MNIST idx file; on Debian install the "
                              "dataset-fashion-mnist package)");
}

}  // namespace

at::Tensor read_idx(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw IoError(path + ": no such file");
  if (fs::is_directory(path, ec)) throw IoError(path + ": is a directory, expected an idx file");
  GzFile file(gzopen(path.c_str(), "rb"));
  if (!file) throw IoError(path + ": cannot open for reading");

  uint8_t magic[4] = {0, 0, 0, 0};
  const size_t got_magic = read_some(file.get(), path, magic, 4);
  if (got_magic < 4) {
    throw IoError(path + ": truncated idx file (" + std::to_string(got_magic) +
                  " bytes, no complete header)");
  }
  if (magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 || magic[3] < 1 || magic[3] > 4) {
    char hex[16];
    std::snprintf(hex, sizeof(hex), "0x%02x%02x%02x%02x", magic[0], magic[1], magic[2], magic[3]);
    throw IoError(path + ": wrong magic " + hex +
                  ", expected an unsigned-byte idx file (0x000008 followed by 1..4 dimensions)");
  }
  const int ndim = magic[3];
  std::vector<int64_t> sizes(ndim);
  uint64_t total = 1;
  for (int d = 0; d < ndim; ++d) {
    uint8_t b[4];
    if (read_some(file.get(), path, b, 4) < 4) {
      throw IoError(path + ": truncated idx file (header ends inside dimension " +
                    std::to_string(d) + ")");
    }
    sizes[d] = (int64_t{b[0]} << 24) | (int64_t{b[1]} << 16) | (int64_t{b[2]} << 8) | b[3];
    total *= static_cast<uint64_t>(sizes[d]);
    if (total > (uint64_t{1} << 34)) throw IoError(path + ": implausible idx dimensions");
  }
  at::Tensor data = at::empty(sizes, at::kByte);
  const size_t got = read_some(file.get(), path, data.data_ptr<uint8_t>(), total);
  if (got < total) {
    throw IoError(path + ": truncated idx file: the header promises " + std::to_string(total) +
                  " data bytes, got " + std::to_string(got) + gz_error(file.get()));
  }
  uint8_t extra = 0;
  if (read_some(file.get(), path, &extra, 1) != 0) {
    throw IoError(path + ": " + std::to_string(total) +
                  " data bytes as the header says, followed by extra bytes");
  }
  return data;
}

std::string FashionMnist::default_root() {
  const char* root = std::getenv("OSTROV_FASHION_MNIST");
  return root != nullptr && *root != '\0' ? std::string(root) : std::string(kDefaultRoot);
}

FashionMnist::FashionMnist(FashionMnistSplit split, const std::string& root) : split_(split) {
  const std::string prefix = split == FashionMnistSplit::kTrain ? "train" : "t10k";
  const std::string images_path = find_file(root, prefix + "-images-idx3-ubyte");
  const std::string labels_path = find_file(root, prefix + "-labels-idx1-ubyte");
  images_ = read_idx(images_path);
  if (images_.dim() != 3 || images_.size(1) != kItemSize || images_.size(2) != kItemSize) {
    throw IoError(images_path + ": expected [N,28,28] images, got " +
                  c10::str(images_.sizes()));
  }
  at::Tensor labels = read_idx(labels_path);
  if (labels.dim() != 1) {
    throw IoError(labels_path + ": expected [N] labels, got " + c10::str(labels.sizes()));
  }
  if (labels.size(0) != images_.size(0)) {
    throw DataError(labels_path + ": " + std::to_string(labels.size(0)) + " labels but " +
                    images_path + " has " + std::to_string(images_.size(0)) + " images");
  }
  if (labels.numel() > 0) {
    const int64_t hi = labels.max().item<int64_t>();
    if (hi >= kNumClasses) {
      throw DataError(labels_path + ": label " + std::to_string(hi) +
                      " out of range, Fashion-MNIST has classes 0..9");
    }
  }
  labels_ = labels.to(at::kLong);
}

const uint8_t* FashionMnist::pixels(int64_t index) const {
  TORCH_CHECK(index >= 0 && index < size(), "FashionMnist: index ", index, " out of range [0,",
              size(), ")");
  return images_.data_ptr<uint8_t>() + index * kItemSize * kItemSize;
}

int64_t FashionMnist::label(int64_t index) const {
  TORCH_CHECK(index >= 0 && index < size(), "FashionMnist: index ", index, " out of range [0,",
              size(), ")");
  return labels_.data_ptr<int64_t>()[index];
}

const std::vector<std::string>& FashionMnist::class_names() {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser", "Pullover", "Dress",
                                                 "Coat",        "Sandal",  "Shirt",    "Sneaker",
                                                 "Bag",         "Ankle boot"};
  return names;
}

}  // namespace ostrov::data
