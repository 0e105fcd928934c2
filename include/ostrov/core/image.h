#pragma once
// OpenCV images <-> LibTorch tensors.
//
// Conventions (as torchvision): an image tensor is [3,H,W] float32 RGB in [0,1] (before
// normalisation); a batch is [N,3,H,W]. OpenCV images are [H,W,3] uint8 BGR (cv::Mat CV_8UC3).
// A class mask is [H,W] int64 with class indices, 255 = ignore; on disk it is an 8-bit PNG.

#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <opencv2/core/mat.hpp>

namespace ostrov::core {

/// ImageNet statistics used by torchvision's pretrained models (RGB order).
inline const std::vector<double> kImageNetMean = {0.485, 0.456, 0.406};
inline const std::vector<double> kImageNetStd = {0.229, 0.224, 0.225};

/// [H,W,3] uint8 BGR (or [H,W] uint8 grey, CV_8UC1) -> [3,H,W] float32 RGB in [0,1]
/// (grey is repeated over the 3 channels). The tensor owns its memory.
at::Tensor image_to_tensor(const cv::Mat& image);

/// [3,H,W] float RGB in [0,1] (values outside are clamped) -> [H,W,3] uint8 BGR.
/// Also accepts [1,3,H,W].
cv::Mat tensor_to_image(const at::Tensor& tensor);

/// (x - mean) / std per channel for [3,H,W] or [N,3,H,W] tensors.
at::Tensor normalize(const at::Tensor& image, const std::vector<double>& mean = kImageNetMean,
                     const std::vector<double>& std = kImageNetStd);
/// Inverse of normalize.
at::Tensor denormalize(const at::Tensor& image, const std::vector<double>& mean = kImageNetMean,
                       const std::vector<double>& std = kImageNetStd);

/// Stacks [3,H,W] tensors of equal size into [N,3,H,W]; the error gives the first mismatch.
at::Tensor stack_images(const std::vector<at::Tensor>& images);

/// The file extensions of images that ostrov reads from folders (datasets, `ostrov predict`
/// over a folder), lower case: torchvision's set, .png .jpg .jpeg .bmp .tif .tiff .webp .ppm
/// .pgm. The content is still what decides: read_image checks it.
const std::vector<std::string>& image_extensions();

/// Whether `path`'s extension, in any case, is one of image_extensions().
bool is_image_file(const std::string& path);

/// "png, jpg, jpeg, bmp, tif, tiff, webp, ppm, pgm": the extensions for a message.
std::string image_extension_list();

/// Reads a colour image (PNG, JPEG, BMP, TIFF or WebP, recognised by content, not by name;
/// other formats OpenCV knows are refused because some of their decoders abort on bad input)
/// as [H,W,3] uint8 BGR: grey is repeated over the 3 channels, a 4th
/// (alpha) channel is dropped. Throws ostrov::IoError naming the path when the file is missing,
/// empty, not an image, truncated (a PNG without its IEND chunk, a JPEG without its end-of-image
/// marker; corrupt data inside a complete JPEG is not detected) or not 8-bit (16-bit PNGs are
/// refused, not rescaled).
cv::Mat read_image(const std::string& path);

/// Writes an image; the format follows the extension. Written to a temporary file in the same
/// folder and renamed, so a failure leaves no partial file. Throws ostrov::IoError.
void write_image(const std::string& path, const cv::Mat& image);

/// Reads a class mask as [H,W] int64: an 8-bit single-channel image holding the class index
/// per pixel, or a palette (indexed-colour) PNG, as PASCAL VOC's masks, whose palette indices
/// are the class indices (the colours are ignored). Throws ostrov::IoError for missing,
/// unreadable, multi-channel or 16-bit files.
at::Tensor read_mask(const std::string& path);

/// [H,W] integer class mask -> CV_8UC1 (values must be in [0,255]).
cv::Mat mask_to_mat(const at::Tensor& mask);
/// CV_8UC1 -> [H,W] int64.
at::Tensor mat_to_mask(const cv::Mat& mask);

/// Nearest-neighbour resize of a [H,W] (or [N,H,W]) class mask; never mixes labels.
at::Tensor resize_mask(const at::Tensor& mask, int64_t height, int64_t width);

}  // namespace ostrov::core
