#include "ostrov/core/image.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <ATen/ATen.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <png.h>

#include "ostrov/core/error.h"
#include "ostrov/io/checkpoint.h"

namespace fs = std::filesystem;

namespace ostrov::core {

namespace {

std::string read_bytes(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw IoError(path + ": no such file");
  if (fs::is_directory(path, ec)) throw IoError(path + ": is a directory, expected an image");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(path + ": cannot open for reading");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Binary PGM/PPM ("P5"/"P6"): the header's width, height and maxval (whitespace and # comments
// between them), then exactly one whitespace byte before the pixels. Returns the size the file
// must have at least, or 0 when the header is malformed.
size_t pnm_expected_size(const std::string& bytes) {
  size_t at = 2;
  std::array<uint64_t, 3> values{};  // width, height, maxval
  for (auto& value : values) {
    while (at < bytes.size() && (std::isspace(static_cast<unsigned char>(bytes[at])) || bytes[at] == '#')) {
      if (bytes[at] == '#') {
        while (at < bytes.size() && bytes[at] != '\n') ++at;
      } else {
        ++at;
      }
    }
    size_t digits = 0;
    while (at < bytes.size() && std::isdigit(static_cast<unsigned char>(bytes[at])) && digits < 9) {
      value = value * 10 + static_cast<uint64_t>(bytes[at] - '0');
      ++at;
      ++digits;
    }
    if (digits == 0 || value == 0) return 0;
  }
  if (at >= bytes.size() || !std::isspace(static_cast<unsigned char>(bytes[at])) || values[2] > 65535) {
    return 0;
  }
  const uint64_t channels = bytes[1] == '6' ? 3 : 1, depth = values[2] > 255 ? 2 : 1;
  return at + 1 + static_cast<size_t>(values[0] * values[1] * channels * depth);
}

// OpenCV decodes a truncated JPEG without error (the missing part comes back grey) and some
// truncated PNGs and PNMs too, so check the container's end ourselves.
void check_complete(const std::string& path, const std::string& bytes) {
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  if (n >= 2 && b[0] == 0xFF && b[1] == 0xD8) {  // JPEG: must end with EOI (FF D9)
    size_t end = n;
    while (end > 2 && (b[end - 1] == 0x00 || b[end - 1] == 0x0A || b[end - 1] == 0x0D)) --end;
    if (end < 4 || b[end - 2] != 0xFF || b[end - 1] != 0xD9) {
      throw IoError(path + ": truncated JPEG (no end-of-image marker)");
    }
  } else if (n >= 8 && b[0] == 0x89 && b[1] == 'P' && b[2] == 'N' && b[3] == 'G') {
    static const unsigned char kIend[] = {'I', 'E', 'N', 'D'};
    if (n < 12 || !std::equal(kIend, kIend + 4, b + n - 8)) {
      throw IoError(path + ": truncated PNG (no IEND chunk)");
    }
  } else if (n >= 2 && b[0] == 'P' && (b[1] == '5' || b[1] == '6')) {
    const size_t expected = pnm_expected_size(bytes);
    if (expected == 0) throw IoError(path + ": malformed PGM/PPM header");
    if (n < expected) {
      throw IoError(path + ": truncated PGM/PPM (" + std::to_string(n) + " bytes, the header says " +
                    std::to_string(expected) + ")");
    }
  }
}

// PNG colour type 3: pixels are indices into a palette (PASCAL VOC's class masks are stored so).
bool is_palette_png(const std::string& bytes) {
  return bytes.size() > 25 && bytes.compare(0, 4, "\x89PNG") == 0 &&
         bytes.compare(12, 4, "IHDR") == 0 && bytes[25] == 3;
}

// The formats ostrov hands to OpenCV, by signature (torchvision's image extensions: PNG, JPEG,
// BMP, TIFF, WebP and binary PGM/PPM). OpenCV would also sniff DICOM, JPEG 2000, OpenEXR, PFM,
// HDR, Sun raster, ASCII PNM and GDAL's formats; some of those decoders abort the
// process on malformed input (GDCM asserts on a bad DICOM header, found by fuzz_image), so
// anything else is refused before it reaches them.
bool supported_format(const std::string& bytes) {
  auto starts = [&](const char* magic, size_t n, size_t at = 0) {
    return bytes.size() >= at + n && bytes.compare(at, n, magic, n) == 0;
  };
  return starts("\x89PNG\r\n\x1a\n", 8) || starts("\xff\xd8\xff", 3) || starts("BM", 2) ||
         starts("II*\0", 4) || starts("MM\0*", 4) || (starts("RIFF", 4) && starts("WEBP", 4, 8)) ||
         ((starts("P5", 2) || starts("P6", 2)) && bytes.size() > 2 &&
          std::isspace(static_cast<unsigned char>(bytes[2])));
}

cv::Mat decode(const std::string& path, const std::string& bytes, int flags) {
  if (bytes.empty()) throw IoError(path + ": empty file, expected an image");
  if (!supported_format(bytes)) {
    throw IoError(path + ": not a readable image (not PNG, JPEG, BMP, TIFF, WebP or binary PGM/PPM)");
  }
  check_complete(path, bytes);
  cv::Mat image;
  try {
    image = cv::imdecode(cv::Mat(1, static_cast<int>(bytes.size()), CV_8UC1,
                                 const_cast<char*>(bytes.data())),
                         flags);
  } catch (const cv::Exception& e) {
    throw IoError(path + ": cannot decode image: " + e.what());
  }
  if (image.empty()) throw IoError(path + ": not a readable image (unknown format or corrupt)");
  return image;
}

// The palette indices of a palette PNG, decoded with libpng: OpenCV expands a palette to its
// colours, and colours cannot be mapped back when a palette repeats one (palettes padded with
// black are common). Bit depths 1, 2, 4 and 8 and interlaced files are read. libpng reports
// errors by longjmp, so the two functions that call it hold only plain data between setjmp and
// the calls (no destructor is skipped); their errors become an IoError naming the file.
struct PngInput {
  const std::string* bytes;
  size_t offset;
  char error[200];
};

void png_on_error(png_structp png, png_const_charp message) {
  auto* in = static_cast<PngInput*>(png_get_error_ptr(png));
  std::snprintf(in->error, sizeof(in->error), "%s", message);
  png_longjmp(png, 1);
}

void png_on_warning(png_structp, png_const_charp) {}

void png_read_bytes(png_structp png, png_bytep out, png_size_t n) {
  auto* in = static_cast<PngInput*>(png_get_io_ptr(png));
  if (in->offset + n > in->bytes->size()) png_error(png, "unexpected end of file");
  std::memcpy(out, in->bytes->data() + in->offset, n);
  in->offset += n;
}

// Reads the header; false on a libpng error.
bool png_read_header(png_structp png, png_infop info, png_uint_32* width, png_uint_32* height,
                     png_size_t* row_bytes) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_sig_bytes(png, 8);
  png_read_info(png, info);
  png_set_packing(png);  // 1, 2 and 4-bit indices become one byte each
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  *width = png_get_image_width(png, info);
  *height = png_get_image_height(png, info);
  *row_bytes = png_get_rowbytes(png, info);
  return true;
}

bool png_read_rows(png_structp png, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_image(png, rows);
  return true;
}

cv::Mat decode_palette_indices(const std::string& path, const std::string& bytes) {
  PngInput in{&bytes, 8, ""};  // after the signature, which is_palette_png checked
  png_structp png =
      png_create_read_struct(PNG_LIBPNG_VER_STRING, &in, png_on_error, png_on_warning);
  png_infop info = png != nullptr ? png_create_info_struct(png) : nullptr;
  struct Release {
    png_structp* png;
    png_infop* info;
    ~Release() { png_destroy_read_struct(png, info, nullptr); }
  } release{&png, &info};
  if (png == nullptr || info == nullptr) throw IoError(path + ": cannot start the PNG decoder");
  png_set_read_fn(png, &in, png_read_bytes);
  png_uint_32 width = 0, height = 0;
  png_size_t row_bytes = 0;
  if (!png_read_header(png, info, &width, &height, &row_bytes)) {
    throw IoError(path + ": cannot decode the palette PNG: " + in.error);
  }
  // OpenCV's own limit on decoded pixels (CV_IO_MAX_IMAGE_PIXELS) guards against size bombs.
  if (row_bytes != width || width == 0 || height == 0 ||
      static_cast<uint64_t>(width) * height > (uint64_t{1} << 30)) {
    throw IoError(path + ": cannot decode the palette PNG: unexpected size " +
                  std::to_string(width) + "x" + std::to_string(height));
  }
  cv::Mat indices(static_cast<int>(height), static_cast<int>(width), CV_8UC1);
  std::vector<png_bytep> rows(height);
  for (png_uint_32 y = 0; y < height; ++y) rows[y] = indices.ptr<png_byte>(static_cast<int>(y));
  if (!png_read_rows(png, rows.data())) {
    throw IoError(path + ": cannot decode the palette PNG: " + in.error);
  }
  return indices;
}

}  // namespace

at::Tensor image_to_tensor(const cv::Mat& image) {
  TORCH_CHECK(!image.empty(), "image_to_tensor: empty image");
  TORCH_CHECK(image.depth() == CV_8U, "image_to_tensor: expected an 8-bit image, got depth ",
              image.depth());
  cv::Mat rgb;
  if (image.channels() == 3) {
    cv::cvtColor(image, rgb, cv::COLOR_BGR2RGB);
  } else if (image.channels() == 1) {
    cv::cvtColor(image, rgb, cv::COLOR_GRAY2RGB);
  } else if (image.channels() == 4) {
    cv::cvtColor(image, rgb, cv::COLOR_BGRA2RGB);
  } else {
    TORCH_CHECK(false, "image_to_tensor: expected 1, 3 or 4 channels, got ", image.channels());
  }
  // from_blob does not copy: the permute+to(float) below makes the owning copy.
  auto hwc = at::from_blob(rgb.data, {rgb.rows, rgb.cols, 3},
                           {static_cast<int64_t>(rgb.step[0]), 3, 1}, at::kByte);
  return hwc.permute({2, 0, 1}).to(at::kFloat).div_(255.0).contiguous();
}

cv::Mat tensor_to_image(const at::Tensor& tensor) {
  at::Tensor t = tensor;
  if (t.dim() == 4) {
    TORCH_CHECK(t.size(0) == 1, "tensor_to_image: expected [3,H,W] or [1,3,H,W], got ",
                t.sizes());
    t = t.squeeze(0);
  }
  TORCH_CHECK(t.dim() == 3 && t.size(0) == 3, "tensor_to_image: expected [3,H,W], got ",
              t.sizes());
  auto hwc = t.detach()
                 .to(at::kCPU, at::kFloat)
                 .clamp(0.0, 1.0)
                 .mul(255.0)
                 .round()
                 .to(at::kByte)
                 .permute({1, 2, 0})
                 .contiguous();
  cv::Mat rgb(static_cast<int>(hwc.size(0)), static_cast<int>(hwc.size(1)), CV_8UC3,
              hwc.data_ptr<uint8_t>());
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);  // writes into new memory owned by bgr
  return bgr;
}

namespace {
at::Tensor channel_stats(const std::vector<double>& values, const at::Tensor& like, int64_t dims,
                         const char* what) {
  TORCH_CHECK(values.size() == 3, what, ": expected 3 values (RGB), got ", values.size());
  auto t = at::tensor(values, like.options().dtype(at::kDouble)).to(like.scalar_type());
  return dims == 4 ? t.view({1, 3, 1, 1}) : t.view({3, 1, 1});
}
}  // namespace

at::Tensor normalize(const at::Tensor& image, const std::vector<double>& mean,
                     const std::vector<double>& std) {
  TORCH_CHECK((image.dim() == 3 && image.size(0) == 3) || (image.dim() == 4 && image.size(1) == 3),
              "normalize: expected [3,H,W] or [N,3,H,W], got ", image.sizes());
  for (double s : std) TORCH_CHECK(s > 0.0, "normalize: std must be positive, got ", s);
  return (image - channel_stats(mean, image, image.dim(), "normalize mean")) /
         channel_stats(std, image, image.dim(), "normalize std");
}

at::Tensor denormalize(const at::Tensor& image, const std::vector<double>& mean,
                       const std::vector<double>& std) {
  TORCH_CHECK((image.dim() == 3 && image.size(0) == 3) || (image.dim() == 4 && image.size(1) == 3),
              "denormalize: expected [3,H,W] or [N,3,H,W], got ", image.sizes());
  return image * channel_stats(std, image, image.dim(), "denormalize std") +
         channel_stats(mean, image, image.dim(), "denormalize mean");
}

at::Tensor stack_images(const std::vector<at::Tensor>& images) {
  TORCH_CHECK(!images.empty(), "stack_images: no images");
  for (size_t i = 0; i < images.size(); ++i) {
    TORCH_CHECK(images[i].sizes() == images[0].sizes(), "stack_images: image ", i, " has size ",
                images[i].sizes(), " but image 0 has ", images[0].sizes());
  }
  return at::stack(images);
}

cv::Mat read_image(const std::string& path) {
  cv::Mat image = decode(path, read_bytes(path), cv::IMREAD_UNCHANGED);
  if (image.depth() != CV_8U) {
    throw IoError(path + ": expected an 8-bit image, got " +
                  std::to_string(8 * image.elemSize1()) + "-bit");
  }
  if (image.channels() == 1) {
    cv::cvtColor(image, image, cv::COLOR_GRAY2BGR);
  } else if (image.channels() == 4) {
    cv::cvtColor(image, image, cv::COLOR_BGRA2BGR);
  } else if (image.channels() != 3) {
    throw IoError(path + ": expected 1, 3 or 4 channels, got " + std::to_string(image.channels()));
  }
  return image;
}

void write_image(const std::string& path, const cv::Mat& image) {
  TORCH_CHECK(!image.empty(), "write_image: empty image for ", path);
  const std::string ext = fs::path(path).extension().string();
  if (ext.empty()) throw IoError(path + ": no extension, cannot choose an image format");
  std::vector<uchar> buffer;
  bool ok = false;
  try {
    ok = cv::imencode(ext, image, buffer);
  } catch (const cv::Exception& e) {
    throw IoError(path + ": cannot encode image: " + e.what());
  }
  if (!ok) throw IoError(path + ": cannot encode image as " + ext);
  io::write_file_atomic(path, std::string(buffer.begin(), buffer.end()));
}

at::Tensor read_mask(const std::string& path) {
  const std::string bytes = read_bytes(path);
  // A palette PNG (PASCAL VOC's masks) holds the class index of each pixel as its palette index.
  if (is_palette_png(bytes)) {
    check_complete(path, bytes);
    return mat_to_mask(decode_palette_indices(path, bytes));
  }
  cv::Mat mask = decode(path, bytes, cv::IMREAD_UNCHANGED);
  if (mask.depth() != CV_8U) {
    throw IoError(path + ": a class mask must be 8-bit, got " +
                  std::to_string(8 * mask.elemSize1()) + "-bit");
  }
  if (mask.channels() != 1) {
    throw IoError(path + ": a class mask must have 1 channel (class index per pixel), got " +
                  std::to_string(mask.channels()));
  }
  return mat_to_mask(mask);
}

cv::Mat mask_to_mat(const at::Tensor& mask) {
  TORCH_CHECK(mask.dim() == 2, "mask_to_mat: expected [H,W], got ", mask.sizes());
  TORCH_CHECK(!at::isFloatingType(mask.scalar_type()), "mask_to_mat: expected an integer mask, got ",
              mask.scalar_type());
  auto m = mask.detach().to(at::kCPU);
  if (m.numel() > 0) {
    const int64_t lo = m.min().item<int64_t>();
    const int64_t hi = m.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi <= 255, "mask_to_mat: labels must be in [0,255], got [", lo, ",", hi,
                "]");
  }
  auto bytes = m.to(at::kByte).contiguous();
  cv::Mat wrapped(static_cast<int>(bytes.size(0)), static_cast<int>(bytes.size(1)), CV_8UC1,
                  bytes.data_ptr<uint8_t>());
  return wrapped.clone();
}

at::Tensor mat_to_mask(const cv::Mat& mask) {
  TORCH_CHECK(mask.type() == CV_8UC1, "mat_to_mask: expected CV_8UC1, got type ", mask.type());
  auto t = at::from_blob(mask.data, {mask.rows, mask.cols},
                         {static_cast<int64_t>(mask.step[0]), 1}, at::kByte);
  return t.to(at::kLong);  // copies
}

at::Tensor resize_mask(const at::Tensor& mask, int64_t height, int64_t width) {
  TORCH_CHECK(mask.dim() == 2 || mask.dim() == 3, "resize_mask: expected [H,W] or [N,H,W], got ",
              mask.sizes());
  TORCH_CHECK(height > 0 && width > 0, "resize_mask: size must be positive, got ", height, "x",
              width);
  // Nearest neighbour as OpenCV's INTER_NEAREST: source index floor(dst * in / out).
  const int64_t in_h = mask.size(-2), in_w = mask.size(-1);
  auto opts = mask.options().dtype(at::kLong);
  auto ys = (at::arange(height, opts) * in_h).div(height, "floor").clamp_max(in_h - 1);
  auto xs = (at::arange(width, opts) * in_w).div(width, "floor").clamp_max(in_w - 1);
  return mask.index_select(-2, ys).index_select(-1, xs);
}

const std::vector<std::string>& image_extensions() {
  static const std::vector<std::string> extensions = {".png", ".jpg",  ".jpeg", ".bmp", ".tif",
                                                      ".tiff", ".webp", ".ppm", ".pgm"};
  return extensions;
}

bool is_image_file(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const auto& known = image_extensions();
  return std::find(known.begin(), known.end(), ext) != known.end();
}

std::string image_extension_list() {
  std::string out;
  for (const auto& e : image_extensions()) out += (out.empty() ? "" : ", ") + e.substr(1);
  return out;
}

}  // namespace ostrov::core
