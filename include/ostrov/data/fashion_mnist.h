#pragma once
// Fashion-MNIST (Xiao, Rasul, Vollgraf 2017, "Fashion-MNIST: a Novel Image Dataset for
// Benchmarking Machine Learning Algorithms"): 70,000 28x28 grey images of 10 clothing classes,
// as shipped by Debian's `dataset-fashion-mnist` package (gzip-compressed idx files in
// /usr/share/datasets/fashion-mnist). ostrov composes its generated scenes from these items.

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace ostrov::data {

/// Which half of Fashion-MNIST to read.
enum class FashionMnistSplit {
  kTrain,  ///< train-images-idx3-ubyte.gz / train-labels-idx1-ubyte.gz (60,000 items)
  kTest,   ///< t10k-images-idx3-ubyte.gz / t10k-labels-idx1-ubyte.gz (10,000 items)
};

/// Reads one idx file (LeCun's MNIST format: big-endian magic 0x0000 08 <ndim>, ndim
/// big-endian uint32 sizes, then the uint8 data), gzip-compressed or not (zlib reads both).
/// Returns a uint8 tensor of the stored shape. Throws ostrov::IoError naming the path when the
/// file is missing, truncated, not an unsigned-byte idx file (wrong magic) or has extra bytes.
at::Tensor read_idx(const std::string& path);

/// The Fashion-MNIST images and labels of one split, held in memory (~47 MB for train).
/// Copies share the tensors (cheap); all accessors are const and thread-safe.
class FashionMnist {
 public:
  /// Debian's install location.
  static constexpr const char* kDefaultRoot = "/usr/share/datasets/fashion-mnist";

  /// The folder read when none is given: the environment variable OSTROV_FASHION_MNIST when
  /// set and not empty (a copy of the files elsewhere, e.g. on a machine without the Debian
  /// package), else kDefaultRoot.
  static std::string default_root();

  /// Reads `<root>/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz` (or the same names
  /// without .gz). Throws ostrov::IoError naming the file (missing, truncated, wrong magic,
  /// not 28x28) and ostrov::DataError when image and label counts differ or a label is > 9.
  explicit FashionMnist(FashionMnistSplit split = FashionMnistSplit::kTrain,
                        const std::string& root = default_root());

  /// Number of items.
  int64_t size() const { return labels_.size(0); }
  /// [N,28,28] uint8, 0 = background (black), 255 = brightest.
  const at::Tensor& images() const { return images_; }
  /// [N] int64 class in 0..9 (index into class_names()).
  const at::Tensor& labels() const { return labels_; }
  /// Pointer to the 28*28 row-major uint8 pixels of item `index` (valid while this lives).
  const uint8_t* pixels(int64_t index) const;
  /// Class (0..9) of item `index`.
  int64_t label(int64_t index) const;
  /// The split read.
  FashionMnistSplit split() const { return split_; }

  /// The 10 class names in label order: "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
  /// "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot".
  static const std::vector<std::string>& class_names();

  static constexpr int64_t kNumClasses = 10;  ///< labels are 0..kNumClasses-1
  static constexpr int64_t kItemSize = 28;     ///< items are kItemSize x kItemSize pixels

 private:
  FashionMnistSplit split_;
  at::Tensor images_;
  at::Tensor labels_;
};

}  // namespace ostrov::data
