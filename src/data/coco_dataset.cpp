#include "ostrov/data/coco_dataset.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "ostrov/core/error.h"
#include "ostrov/core/image.h"
#include "ostrov/core/runtime.h"
#include "ostrov/ops/instance.h"

namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace ostrov::data {

namespace {

// Boxes may poke out of their image by this much (rounding in converters) and are clipped.
constexpr double kBoxTolerance = 1.0;

// An annotation that is invalid: the message says why (without the file/id prefix).
struct Invalid {
  std::string reason;
};

enum class MaskKind { kPolygons, kRle, kBox };

struct Annotation {
  int64_t id = 0;
  int64_t label = 0;
  std::array<float, 4> box{};  // x1,y1,x2,y2
  bool crowd = false;
  MaskKind kind = MaskKind::kBox;
  std::vector<std::vector<double>> polygons;
  ops::Rle rle;
};

std::string read_text(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw IoError(path + ": no such file");
  if (fs::is_directory(path, ec)) throw IoError(path + ": is a directory, expected COCO JSON");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(path + ": cannot open for reading");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

Json parse(const std::string& path, const std::string& text) {
  try {
    return Json::parse(text);
  } catch (const Json::parse_error& e) {
    const size_t offset = std::min<size_t>(e.byte == 0 ? 0 : e.byte - 1, text.size());
    const size_t line = 1 + std::count(text.begin(), text.begin() + offset, '\n');
    const size_t line_start = offset == 0 ? std::string::npos : text.rfind('\n', offset - 1);
    const size_t column = offset - (line_start == std::string::npos ? 0 : line_start + 1) + 1;
    throw DataError(path + ":" + std::to_string(line) + ":" + std::to_string(column) +
                    ": malformed JSON: " + e.what());
  } catch (const Json::exception& e) {  // e.g. a number beyond double's range (out_of_range)
    throw DataError(path + ": malformed JSON: " + e.what());
  }
}

// An integer (integral JSON numbers like 3.0 included); nullopt when absent or not integral.
bool as_int(const Json& object, const char* key, int64_t& out) {
  const auto it = object.find(key);
  if (it == object.end()) return false;
  if (it->is_number_integer()) {
    out = it->get<int64_t>();
    return true;
  }
  if (it->is_number_float()) {
    const double v = it->get<double>();
    if (std::isfinite(v) && std::floor(v) == v && std::fabs(v) < 9e15) {
      out = static_cast<int64_t>(v);
      return true;
    }
  }
  return false;
}

const Json& array_field(const std::string& path, const Json& root, const char* key,
                        bool required) {
  static const Json empty = Json::array();
  const auto it = root.find(key);
  if (it == root.end()) {
    if (!required) return empty;
    throw DataError(path + ": no \"" + key + "\" array (not a COCO instances file?)");
  }
  if (!it->is_array()) {
    throw DataError(path + ": \"" + key + "\" must be an array, got " + it->type_name());
  }
  return *it;
}

std::string join_numbers(const Json& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) out += (i ? ", " : "") + values[i].dump();
  return out + "]";
}

std::array<float, 4> parse_bbox(const Json& ann, const CocoImage& image) {
  const auto it = ann.find("bbox");
  if (it == ann.end()) throw Invalid{"no bbox"};
  if (!it->is_array() || it->size() != 4) throw Invalid{"bbox must be [x,y,w,h], got " + it->dump()};
  std::array<double, 4> v{};
  for (size_t i = 0; i < 4; ++i) {
    if (!(*it)[i].is_number()) throw Invalid{"bbox must hold 4 numbers, got " + it->dump()};
    v[i] = (*it)[i].get<double>();
    if (!std::isfinite(v[i])) throw Invalid{"bbox has a non-finite value: " + it->dump()};
  }
  const double x = v[0], y = v[1], w = v[2], h = v[3];
  if (w <= 0.0 || h <= 0.0) {
    throw Invalid{"degenerate bbox " + join_numbers(*it) + " (width and height must be > 0)"};
  }
  const auto W = static_cast<double>(image.width), H = static_cast<double>(image.height);
  if (x < -kBoxTolerance || y < -kBoxTolerance) {
    throw Invalid{"bbox " + join_numbers(*it) + " has a negative corner"};
  }
  if (x + w > W + kBoxTolerance || y + h > H + kBoxTolerance) {
    throw Invalid{"bbox " + join_numbers(*it) + " reaches outside its image (" +
                  std::to_string(image.width) + "x" + std::to_string(image.height) + ")"};
  }
  const double x1 = std::clamp(x, 0.0, W), y1 = std::clamp(y, 0.0, H);
  const double x2 = std::clamp(x + w, 0.0, W), y2 = std::clamp(y + h, 0.0, H);
  if (x2 <= x1 || y2 <= y1) {
    throw Invalid{"bbox " + join_numbers(*it) + " is empty once clipped to its image"};
  }
  return {static_cast<float>(x1), static_cast<float>(y1), static_cast<float>(x2),
          static_cast<float>(y2)};
}

void parse_segmentation(const Json& ann, const CocoImage& image, Annotation& out) {
  const auto it = ann.find("segmentation");
  if (it == ann.end() || it->is_null() || (it->is_array() && it->empty())) {
    out.kind = MaskKind::kBox;
    return;
  }
  const Json& seg = *it;
  if (seg.is_array()) {
    out.kind = MaskKind::kPolygons;
    for (size_t p = 0; p < seg.size(); ++p) {
      const Json& poly = seg[p];
      if (!poly.is_array()) {
        throw Invalid{"invalid polygon " + std::to_string(p) + ": expected [x0,y0,x1,y1,...], got " +
                      std::string(poly.type_name())};
      }
      if (poly.size() % 2 != 0 || poly.size() < 6) {
        throw Invalid{"invalid polygon " + std::to_string(p) + ": " + std::to_string(poly.size()) +
                      " coordinates (need an even number, at least 6 = 3 points)"};
      }
      std::vector<double> coords;
      coords.reserve(poly.size());
      for (const Json& c : poly) {
        if (!c.is_number() || !std::isfinite(c.get<double>()) || std::fabs(c.get<double>()) > 1e6) {
          throw Invalid{"invalid polygon " + std::to_string(p) + ": coordinate " + c.dump() +
                        " is not a finite number"};
        }
        coords.push_back(c.get<double>());
      }
      out.polygons.push_back(std::move(coords));
    }
    return;
  }
  if (!seg.is_object()) {
    throw Invalid{"segmentation must be polygons or an RLE object, got " + std::string(seg.type_name())};
  }
  out.kind = MaskKind::kRle;
  const auto size = seg.find("size");
  const auto counts = seg.find("counts");
  if (size == seg.end() || !size->is_array() || size->size() != 2 ||
      !(*size)[0].is_number_integer() || !(*size)[1].is_number_integer()) {
    throw Invalid{"RLE needs \"size\": [height, width]"};
  }
  const auto h = (*size)[0].get<int64_t>(), w = (*size)[1].get<int64_t>();
  if (h != image.height || w != image.width) {
    throw Invalid{"RLE size [" + std::to_string(h) + ", " + std::to_string(w) +
                  "] differs from its image's [" + std::to_string(image.height) + ", " +
                  std::to_string(image.width) + "]"};
  }
  if (counts == seg.end()) throw Invalid{"RLE has no \"counts\""};
  const uint64_t total = static_cast<uint64_t>(h) * static_cast<uint64_t>(w);
  if (counts->is_string()) {
    try {
      out.rle = ops::rle_from_string(counts->get<std::string>(), h, w);
    } catch (const Error& e) {
      throw Invalid{std::string("invalid compressed RLE: ") + e.what()};
    }
    uint64_t sum = 0;
    for (uint32_t c : out.rle.counts) sum += c;
    if (sum != total) {
      throw Invalid{"invalid compressed RLE: counts sum to " + std::to_string(sum) +
                    ", expected h*w = " + std::to_string(total)};
    }
    return;
  }
  if (!counts->is_array()) throw Invalid{"RLE counts must be a string or an array of integers"};
  out.rle.height = h;
  out.rle.width = w;
  out.rle.counts.reserve(counts->size());
  uint64_t sum = 0;
  for (const Json& c : *counts) {
    if (!c.is_number_integer() || c.get<int64_t>() < 0 || c.get<int64_t>() > 0xFFFFFFFFll) {
      throw Invalid{"invalid uncompressed RLE: count " + c.dump() + " is not a non-negative integer"};
    }
    out.rle.counts.push_back(static_cast<uint32_t>(c.get<int64_t>()));
    sum += c.get<uint64_t>();
  }
  if (sum != total) {
    throw Invalid{"invalid uncompressed RLE: counts sum to " + std::to_string(sum) +
                  ", expected h*w = " + std::to_string(h) + "*" + std::to_string(w) + " = " +
                  std::to_string(total)};
  }
}

at::Tensor decode_mask(const Annotation& ann, int64_t height, int64_t width) {
  switch (ann.kind) {
    case MaskKind::kPolygons:
      return ops::polygons_to_mask(ann.polygons, height, width);
    case MaskKind::kRle:
      return ops::rle_decode(ann.rle);
    case MaskKind::kBox: {
      at::Tensor mask = at::zeros({height, width}, at::kByte);
      const auto x1 = static_cast<int64_t>(std::floor(ann.box[0]));
      const auto y1 = static_cast<int64_t>(std::floor(ann.box[1]));
      const auto x2 = std::min<int64_t>(width, static_cast<int64_t>(std::ceil(ann.box[2])));
      const auto y2 = std::min<int64_t>(height, static_cast<int64_t>(std::ceil(ann.box[3])));
      mask.slice(0, y1, y2).slice(1, x1, x2).fill_(1);
      return mask;
    }
  }
  return {};
}

}  // namespace

struct CocoDataset::Impl {
  std::string path;
  std::string images_dir;
  std::vector<CocoImage> images;
  std::vector<std::vector<Annotation>> annotations;  // per image, file order
  std::vector<int64_t> label_to_category;
  std::vector<std::string> names;
  std::map<int64_t, int64_t> category_to_label;
  int64_t kept = 0;
  int64_t skipped = 0;
  CocoOptions options;

  void load(const CocoOptions& options);
};

void CocoDataset::Impl::load(const CocoOptions& options) {
  const Json root = parse(path, read_text(path));
  if (!root.is_object()) {
    throw DataError(path + ": a COCO file is a JSON object, got " + std::string(root.type_name()));
  }

  // Images.
  std::unordered_map<int64_t, size_t> image_index;
  const Json& images_json = array_field(path, root, "images", true);
  for (size_t i = 0; i < images_json.size(); ++i) {
    const Json& entry = images_json[i];
    const std::string where = path + ": images[" + std::to_string(i) + "]";
    if (!entry.is_object()) throw DataError(where + " must be an object");
    CocoImage image;
    if (!as_int(entry, "id", image.id)) throw DataError(where + " has no integer \"id\"");
    const std::string named = path + ": image id " + std::to_string(image.id);
    const auto file = entry.find("file_name");
    if (file == entry.end() || !file->is_string() || file->get<std::string>().empty()) {
      throw DataError(named + " has no \"file_name\" string");
    }
    image.file_name = file->get<std::string>();
    if (!as_int(entry, "height", image.height) || !as_int(entry, "width", image.width) ||
        image.height <= 0 || image.width <= 0) {
      throw DataError(named + " (" + image.file_name +
                      ") needs positive integer \"height\" and \"width\"");
    }
    const auto [it, inserted] = image_index.emplace(image.id, images.size());
    if (!inserted) {
      throw DataError(path + ": duplicate image id " + std::to_string(image.id) + " (images[" +
                      std::to_string(it->second) + "] and images[" + std::to_string(i) + "])");
    }
    images.push_back(std::move(image));
  }
  annotations.resize(images.size());

  // Categories, labelled 1..C in ascending id order.
  const Json& categories_json = array_field(path, root, "categories", true);
  std::map<int64_t, std::string> categories;
  for (size_t i = 0; i < categories_json.size(); ++i) {
    const Json& entry = categories_json[i];
    const std::string where = path + ": categories[" + std::to_string(i) + "]";
    int64_t id = 0;
    if (!entry.is_object() || !as_int(entry, "id", id)) {
      throw DataError(where + " needs an integer \"id\"");
    }
    const auto name = entry.find("name");
    if (name == entry.end() || !name->is_string()) {
      throw DataError(path + ": category id " + std::to_string(id) + " has no \"name\" string");
    }
    if (!categories.emplace(id, name->get<std::string>()).second) {
      throw DataError(path + ": duplicate category id " + std::to_string(id));
    }
  }
  if (categories.empty()) throw DataError(path + ": no categories");
  label_to_category = {0};
  names = {"background"};
  for (const auto& [id, name] : categories) {
    category_to_label[id] = static_cast<int64_t>(label_to_category.size());
    label_to_category.push_back(id);
    names.push_back(name);
  }

  // Annotations.
  const Json& annotations_json = array_field(path, root, "annotations", false);
  std::unordered_set<int64_t> annotation_ids;
  std::string first_reason;
  for (size_t i = 0; i < annotations_json.size(); ++i) {
    const Json& entry = annotations_json[i];
    std::string where = path + ": annotations[" + std::to_string(i) + "]";
    try {
      if (!entry.is_object()) throw Invalid{"must be an object"};
      Annotation ann;
      if (!as_int(entry, "id", ann.id)) throw Invalid{"has no integer \"id\""};
      where = path + ": annotation id " + std::to_string(ann.id);
      int64_t image_id = 0;
      if (!as_int(entry, "image_id", image_id)) throw Invalid{"has no integer \"image_id\""};
      where += " (image id " + std::to_string(image_id) + ")";
      if (!annotation_ids.insert(ann.id).second) throw Invalid{"duplicate annotation id"};
      const auto image_it = image_index.find(image_id);
      if (image_it == image_index.end()) {
        throw Invalid{"refers to unknown image id " + std::to_string(image_id)};
      }
      const CocoImage& image = images[image_it->second];
      int64_t category_id = 0;
      if (!as_int(entry, "category_id", category_id)) throw Invalid{"has no integer \"category_id\""};
      const auto category_it = category_to_label.find(category_id);
      if (category_it == category_to_label.end()) {
        throw Invalid{"refers to unknown category id " + std::to_string(category_id)};
      }
      ann.label = category_it->second;
      const auto crowd = entry.find("iscrowd");
      if (crowd != entry.end()) {
        if (crowd->is_boolean()) {
          ann.crowd = crowd->get<bool>();
        } else if (crowd->is_number_integer() &&
                   (crowd->get<int64_t>() == 0 || crowd->get<int64_t>() == 1)) {
          ann.crowd = crowd->get<int64_t>() == 1;
        } else {
          throw Invalid{"iscrowd must be 0 or 1, got " + crowd->dump()};
        }
      }
      ann.box = parse_bbox(entry, image);
      parse_segmentation(entry, image, ann);
      annotations[image_it->second].push_back(std::move(ann));
      ++kept;
    } catch (const Invalid& invalid) {
      const std::string message = where + ": " + invalid.reason;
      if (!options.skip_invalid()) throw DataError(message);
      if (skipped == 0) first_reason = message;
      ++skipped;
    }
  }
  if (skipped > 0) {
    core::logger()->warn("{}: skipped {} invalid annotation(s) of {} (skip_invalid); the first: {}",
                         path, skipped, annotations_json.size(), first_reason);
  }
}

CocoDataset::CocoDataset(const std::string& annotations_json, const std::string& images_dir,
                         CocoOptions options) {
  auto impl = std::make_shared<Impl>();
  impl->path = annotations_json;
  impl->images_dir = images_dir;
  impl->options = options;
  impl->load(options);
  impl_ = std::move(impl);
}

int64_t CocoDataset::size() const { return static_cast<int64_t>(impl_->images.size()); }

Sample CocoDataset::get(int64_t index) const {
  const CocoImage& info = image(index);
  const std::string file = (fs::path(impl_->images_dir) / info.file_name).string();
  const cv::Mat bgr = core::read_image(file);
  if (bgr.rows != info.height || bgr.cols != info.width) {
    throw DataError(file + ": image is " + std::to_string(bgr.cols) + "x" +
                    std::to_string(bgr.rows) + " (WxH) but " + impl_->path + " says image id " +
                    std::to_string(info.id) + " is " + std::to_string(info.width) + "x" +
                    std::to_string(info.height));
  }
  const auto& anns = impl_->annotations[index];
  const auto k = static_cast<int64_t>(anns.size());
  const int64_t h = info.height, w = info.width;
  const bool with_masks = impl_->options.masks();
  at::Tensor instances = with_masks ? at::zeros({k, h, w}, at::kByte) : at::Tensor();
  at::Tensor mask = with_masks ? at::zeros({h, w}, at::kLong) : at::Tensor();
  at::Tensor boxes = at::empty({k, 4}, at::kFloat);
  at::Tensor labels = at::empty({k}, at::kLong);
  at::Tensor iscrowd = at::empty({k}, at::kByte);
  for (int64_t j = 0; j < k; ++j) {
    const Annotation& ann = anns[j];
    std::copy(ann.box.begin(), ann.box.end(), boxes.data_ptr<float>() + 4 * j);
    labels.data_ptr<int64_t>()[j] = ann.label;
    iscrowd.data_ptr<uint8_t>()[j] = ann.crowd ? 1 : 0;
    if (!with_masks) continue;
    at::Tensor m;
    try {
      m = decode_mask(ann, h, w);
    } catch (const Error& e) {
      throw DataError(impl_->path + ": annotation id " + std::to_string(ann.id) + " (image id " +
                      std::to_string(info.id) + "): " + e.what());
    }
    instances[j].copy_(m);
    mask.masked_fill_(m.to(at::kBool), ann.label);
  }
  Sample sample;
  sample.image = core::image_to_tensor(bgr);
  sample.mask = mask;
  sample.instances = instances;
  sample.boxes = boxes;
  sample.labels = labels;
  sample.iscrowd = iscrowd;
  sample.image_id = info.id;
  sample.source = file;
  sample.original_height = h;
  sample.original_width = w;
  return sample;
}

int64_t CocoDataset::num_classes() const {
  return static_cast<int64_t>(impl_->label_to_category.size());
}

const std::vector<int64_t>& CocoDataset::label_to_category_id() const {
  return impl_->label_to_category;
}

const std::vector<std::string>& CocoDataset::category_names() const { return impl_->names; }

int64_t CocoDataset::category_id_to_label(int64_t category_id) const {
  const auto it = impl_->category_to_label.find(category_id);
  if (it == impl_->category_to_label.end()) {
    throw DataError(impl_->path + ": unknown category id " + std::to_string(category_id));
  }
  return it->second;
}

const CocoImage& CocoDataset::image(int64_t index) const {
  TORCH_CHECK(index >= 0 && index < size(), "CocoDataset: index ", index, " out of range [0,",
              size(), ")");
  return impl_->images[index];
}

int64_t CocoDataset::num_annotations() const { return impl_->kept; }
int64_t CocoDataset::num_skipped() const { return impl_->skipped; }
const std::string& CocoDataset::annotations_path() const { return impl_->path; }
const std::string& CocoDataset::images_dir() const { return impl_->images_dir; }

}  // namespace ostrov::data
