#include "ostrov/data/scenes.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <set>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "ostrov/core/error.h"
#include "ostrov/core/image.h"
#include "ostrov/io/json.h"
#include "ostrov/ops/instance.h"

namespace fs = std::filesystem;

namespace ostrov::data {

namespace {

// ---- portable random draws (std distributions differ between standard libraries) ----------

using Rng = std::mt19937_64;

// Uniform in [0, n), unbiased (rejection of the top partial block).
uint64_t draw_below(Rng& rng, uint64_t n) {
  const uint64_t limit = std::numeric_limits<uint64_t>::max() -
                         std::numeric_limits<uint64_t>::max() % n;
  uint64_t v;
  do {
    v = rng();
  } while (v >= limit);
  return v % n;
}

// Uniform integer in [lo, hi].
int64_t draw_int(Rng& rng, int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>(draw_below(rng, static_cast<uint64_t>(hi - lo + 1)));
}

// Uniform in [0, 1) with 53 random bits.
double draw_unit(Rng& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

double draw_real(Rng& rng, double lo, double hi) { return lo + (hi - lo) * draw_unit(rng); }

Rng scene_rng(uint64_t seed, uint64_t index) {
  // seed_seq's mixing is specified by the standard, so the engine state is portable.
  std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32),
                    static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32),
                    0x05c3e5u};
  return Rng(seq);
}

// Random bytes, eight per engine draw (per-pixel noise needs many and little precision).
class RandomBytes {
 public:
  explicit RandomBytes(Rng& rng) : rng_(rng) {}
  // Uniform-ish integer in [lo, hi] for small ranges (hi - lo < 256): (byte * n) >> 8.
  int next(int lo, int hi) {
    if (left_ == 0) {
      bits_ = rng_();
      left_ = 8;
    }
    const auto byte = static_cast<int>(bits_ & 0xFF);
    bits_ >>= 8;
    --left_;
    return lo + ((byte * (hi - lo + 1)) >> 8);
  }

 private:
  Rng& rng_;
  uint64_t bits_ = 0;
  int left_ = 0;
};

uint8_t clamp_byte(double v) {
  return static_cast<uint8_t>(std::lround(std::min(255.0, std::max(0.0, v))));
}

// ---- background ----------------------------------------------------------------------------

cv::Mat make_background(Rng& rng, int height, int width, SceneBackground kind) {
  cv::Mat canvas(height, width, CV_8UC3);
  std::array<int64_t, 3> base{};
  for (auto& c : base) c = draw_int(rng, 0, 90);
  switch (kind) {
    case SceneBackground::kPlain:
      canvas.setTo(cv::Scalar(static_cast<double>(base[0]), static_cast<double>(base[1]),
                              static_cast<double>(base[2])));
      break;
    case SceneBackground::kNoise: {
      RandomBytes noise(rng);
      for (int y = 0; y < height; ++y) {
        auto* row = canvas.ptr<cv::Vec3b>(y);
        for (int x = 0; x < width; ++x) {
          for (int c = 0; c < 3; ++c) {
            row[x][c] = cv::saturate_cast<uint8_t>(static_cast<int>(base[c]) + noise.next(-35, 35));
          }
        }
      }
      break;
    }
    case SceneBackground::kTexture: {
      const int cells = static_cast<int>(draw_int(rng, 3, 8));
      cv::Mat grid(cells, cells, CV_8UC3);
      for (int y = 0; y < cells; ++y) {
        for (int x = 0; x < cells; ++x) {
          for (int c = 0; c < 3; ++c) grid.at<cv::Vec3b>(y, x)[c] = clamp_byte(draw_int(rng, 0, 110));
        }
      }
      cv::Mat smooth;
      cv::resize(grid, smooth, cv::Size(width, height), 0, 0, cv::INTER_CUBIC);
      const double angle = draw_real(rng, 0.0, M_PI);
      const double period = draw_real(rng, 6.0, 24.0);
      const double amplitude = draw_real(rng, 8.0, 24.0);
      const double ca = std::cos(angle) * 2.0 * M_PI / period;
      const double sa = std::sin(angle) * 2.0 * M_PI / period;
      RandomBytes noise(rng);
      for (int y = 0; y < height; ++y) {
        const auto* in = smooth.ptr<cv::Vec3b>(y);
        auto* out = canvas.ptr<cv::Vec3b>(y);
        for (int x = 0; x < width; ++x) {
          const int stripe_int = static_cast<int>(std::lround(amplitude * std::sin(ca * x + sa * y)));
          for (int c = 0; c < 3; ++c) {
            out[x][c] = cv::saturate_cast<uint8_t>(in[x][c] + stripe_int + noise.next(-8, 8));
          }
        }
      }
      break;
    }
  }
  return canvas;
}

// ---- items ---------------------------------------------------------------------------------

struct Item {
  int64_t label = 0;  // Fashion-MNIST class 0..9
  int size = 0;       // side in pixels
  int x = 0, y = 0;   // top-left corner on the canvas
  std::vector<uint8_t> intensity;  // size*size resized item
  std::vector<uint8_t> mask;       // size*size, 1 where intensity > threshold
  int64_t pixels = 0;              // ones in mask
  std::array<double, 3> rgb{};     // tint in [0,1]
};

std::array<double, 3> hsv_to_rgb(double h, double s, double v) {
  const double h6 = h * 6.0;
  const int sector = static_cast<int>(h6) % 6;
  const double f = h6 - std::floor(h6);
  const double p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  switch (sector) {
    case 0: return {v, t, p};
    case 1: return {q, v, p};
    case 2: return {p, v, t};
    case 3: return {p, q, v};
    case 4: return {t, p, v};
    default: return {v, p, q};
  }
}

// Draws an item whose mask has at least min_visible_pixels (redrawn otherwise); false when
// none was found within max_attempts draws.
bool draw_item(Rng& rng, const FashionMnist& items, const SceneOptions& o, Item& item) {
  const int64_t cap = std::min(o.height(), o.width());
  const int64_t lo = std::min(o.min_scale(), cap);
  const int64_t hi = std::min(o.max_scale(), cap);
  for (int64_t attempt = 0; attempt < o.max_attempts(); ++attempt) {
    const auto source = static_cast<int64_t>(draw_below(rng, static_cast<uint64_t>(items.size())));
    item.size = static_cast<int>(draw_int(rng, lo, hi));
    item.label = items.label(source);
    const double hue = draw_unit(rng);
    const double saturation = draw_real(rng, 0.35, 0.9);
    item.rgb = hsv_to_rgb(hue, saturation, 1.0);
    const cv::Mat small(static_cast<int>(FashionMnist::kItemSize),
                        static_cast<int>(FashionMnist::kItemSize), CV_8UC1,
                        const_cast<uint8_t*>(items.pixels(source)));
    cv::Mat big;
    cv::resize(small, big, cv::Size(item.size, item.size), 0, 0, cv::INTER_LINEAR);
    const size_t n = static_cast<size_t>(item.size) * item.size;
    item.intensity.assign(big.data, big.data + n);  // a fresh Mat of 8UC1 is continuous
    item.mask.resize(n);
    item.pixels = 0;
    for (size_t i = 0; i < n; ++i) {
      item.mask[i] = item.intensity[i] > o.threshold() ? 1 : 0;
      item.pixels += item.mask[i];
    }
    if (item.pixels >= o.min_visible_pixels()) return true;
  }
  return false;
}

struct Layout {
  int height, width;
  std::vector<int32_t> owner;     // H*W: index of the visible item, -1 background
  std::vector<uint8_t> occupied;  // H*W: 1 where any placed item's full mask is
  std::vector<Item> placed;
  std::vector<int64_t> visible;   // visible pixels per placed item
};

// Full-mask intersection of `a` placed at (ax,ay) with placed item `b`.
int64_t intersection(const Item& a, int ax, int ay, const Item& b) {
  const int x0 = std::max(ax, b.x), y0 = std::max(ay, b.y);
  const int x1 = std::min(ax + a.size, b.x + b.size), y1 = std::min(ay + a.size, b.y + b.size);
  if (x1 <= x0 || y1 <= y0) return 0;
  int64_t n = 0;
  for (int y = y0; y < y1; ++y) {
    const uint8_t* ra = a.mask.data() + static_cast<size_t>(y - ay) * a.size + (x0 - ax);
    const uint8_t* rb = b.mask.data() + static_cast<size_t>(y - b.y) * b.size + (x0 - b.x);
    for (int x = 0; x < x1 - x0; ++x) n += ra[x] & rb[x];
  }
  return n;
}

bool allowed(const Layout& layout, const Item& item, int ax, int ay, const SceneOptions& o,
             std::vector<int64_t>& loss) {
  for (const Item& other : layout.placed) {
    const int64_t inter = intersection(item, ax, ay, other);
    if (inter == 0) continue;
    if (!o.allow_touching()) return false;
    const double iou = static_cast<double>(inter) / static_cast<double>(item.pixels + other.pixels - inter);
    if (iou > o.max_overlap()) return false;
  }
  if (!o.allow_touching()) {
    for (int y = 0; y < item.size; ++y) {
      for (int x = 0; x < item.size; ++x) {
        if (!item.mask[static_cast<size_t>(y) * item.size + x]) continue;
        const int cy = ay + y, cx = ax + x;
        for (int dy = -1; dy <= 1; ++dy) {
          for (int dx = -1; dx <= 1; ++dx) {
            const int ny = cy + dy, nx = cx + dx;
            if (ny < 0 || nx < 0 || ny >= layout.height || nx >= layout.width) continue;
            if (layout.occupied[static_cast<size_t>(ny) * layout.width + nx]) return false;
          }
        }
      }
    }
  }
  // Occlusion: no earlier item may drop below min_visible_pixels.
  std::fill(loss.begin(), loss.end(), 0);
  for (int y = 0; y < item.size; ++y) {
    for (int x = 0; x < item.size; ++x) {
      if (!item.mask[static_cast<size_t>(y) * item.size + x]) continue;
      const int32_t j = layout.owner[static_cast<size_t>(ay + y) * layout.width + ax + x];
      if (j >= 0) ++loss[j];
    }
  }
  for (size_t j = 0; j < layout.placed.size(); ++j) {
    if (loss[j] > 0 && layout.visible[j] - loss[j] < o.min_visible_pixels()) return false;
  }
  return true;
}

void place(Layout& layout, Item item, int ax, int ay) {
  const auto index = static_cast<int32_t>(layout.placed.size());
  item.x = ax;
  item.y = ay;
  for (int y = 0; y < item.size; ++y) {
    for (int x = 0; x < item.size; ++x) {
      if (!item.mask[static_cast<size_t>(y) * item.size + x]) continue;
      const size_t p = static_cast<size_t>(ay + y) * layout.width + ax + x;
      if (layout.owner[p] >= 0) --layout.visible[layout.owner[p]];
      layout.owner[p] = index;
      layout.occupied[p] = 1;
    }
  }
  layout.visible.push_back(item.pixels);
  layout.placed.push_back(std::move(item));
}

[[noreturn]] void bad_option(const std::string& what) {
  throw ConfigError("scene options: " + what);
}

// ---- writing -------------------------------------------------------------------------------

void write_png(const fs::path& path, const cv::Mat& image) {
  std::vector<uchar> buffer;
  if (!cv::imencode(".png", image, buffer)) throw IoError(path.string() + ": cannot encode PNG");
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw IoError(path.string() + ": cannot open for writing");
  out.write(reinterpret_cast<const char*>(buffer.data()), static_cast<std::streamsize>(buffer.size()));
  out.close();
  if (!out) throw IoError(path.string() + ": write failed (disk full?)");
}

// True when `dir` holds nothing but what write_scenes writes.
bool replaceable(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return false;
  static const std::set<std::string> ours = {"instances.json", "images", "masks"};
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (ours.count(entry.path().filename().string()) == 0) return false;
  }
  return !ec;
}

std::string unique_suffix() {
  static std::atomic<uint64_t> counter{0};
  const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  return std::to_string(::getpid()) + "-" + std::to_string(now) + "-" +
         std::to_string(counter.fetch_add(1));
}

}  // namespace

SceneBackground scene_background_from_string(const std::string& name) {
  if (name == "noise") return SceneBackground::kNoise;
  if (name == "texture") return SceneBackground::kTexture;
  if (name == "plain") return SceneBackground::kPlain;
  throw ConfigError("unknown scene background \"" + name + "\" (known: noise, texture, plain)");
}

std::string to_string(SceneBackground background) {
  switch (background) {
    case SceneBackground::kNoise: return "noise";
    case SceneBackground::kTexture: return "texture";
    case SceneBackground::kPlain: return "plain";
  }
  return "unknown";
}

void check_scene_options(const SceneOptions& o) {
  auto str = [](auto v) { return std::to_string(v); };
  if (o.height() < 1 || o.width() < 1 || o.height() > 16384 || o.width() > 16384) {
    bad_option("size must be in 1..16384, got " + str(o.width()) + "x" + str(o.height()));
  }
  if (o.min_items() < 0 || o.max_items() < o.min_items() || o.max_items() > 10000) {
    bad_option("need 0 <= min_items <= max_items <= 10000, got min_items " + str(o.min_items()) +
               ", max_items " + str(o.max_items()));
  }
  if (o.min_scale() < 1 || o.max_scale() < o.min_scale()) {
    bad_option("need 1 <= min_scale <= max_scale, got min_scale " + str(o.min_scale()) +
               ", max_scale " + str(o.max_scale()));
  }
  if (!(o.max_overlap() >= 0.0 && o.max_overlap() <= 1.0)) {
    bad_option("max_overlap must be in [0,1], got " + str(o.max_overlap()));
  }
  if (o.threshold() < 0 || o.threshold() > 254) {
    bad_option("threshold must be in [0,254], got " + str(o.threshold()));
  }
  if (o.min_visible_pixels() < 1) {
    bad_option("min_visible_pixels must be >= 1, got " + str(o.min_visible_pixels()));
  }
  if (o.max_attempts() < 1) bad_option("max_attempts must be >= 1, got " + str(o.max_attempts()));
}

const std::vector<std::string>& scene_class_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n = {"background"};
    for (const auto& c : FashionMnist::class_names()) n.push_back(c);
    return n;
  }();
  return names;
}

namespace {

// make_scene's work; also hands back the BGR canvas the image tensor was made from, which
// write_scenes encodes directly.
struct Composed {
  Sample sample;
  cv::Mat canvas;
};

Composed compose(const FashionMnist& items, const SceneOptions& options, uint64_t scene_index) {
  TORCH_CHECK(items.size() > 0, "make_scene: no Fashion-MNIST items to draw from");
  const int height = static_cast<int>(options.height());
  const int width = static_cast<int>(options.width());
  Rng rng = scene_rng(options.seed(), scene_index);

  cv::Mat canvas = make_background(rng, height, width, options.background());
  Layout layout{height, width, std::vector<int32_t>(static_cast<size_t>(height) * width, -1),
                std::vector<uint8_t>(static_cast<size_t>(height) * width, 0), {}, {}};
  const int64_t wanted = draw_int(rng, options.min_items(), options.max_items());
  std::vector<int64_t> loss;
  for (int64_t k = 0; k < wanted; ++k) {
    Item item;
    if (!draw_item(rng, items, options, item)) continue;
    loss.assign(layout.placed.size(), 0);
    for (int64_t attempt = 0; attempt < options.max_attempts(); ++attempt) {
      const int ax = static_cast<int>(draw_int(rng, 0, width - item.size));
      const int ay = static_cast<int>(draw_int(rng, 0, height - item.size));
      if (allowed(layout, item, ax, ay, options, loss)) {
        place(layout, std::move(item), ax, ay);
        break;
      }
    }
  }

  // Render the visible pixel of each item and gather masks and boxes.
  const auto count = static_cast<int64_t>(layout.placed.size());
  at::Tensor mask = at::zeros({height, width}, at::kLong);
  at::Tensor instances = at::zeros({count, height, width}, at::kByte);
  std::vector<std::array<int, 4>> extent(count, {width, height, -1, -1});
  auto* mask_data = mask.data_ptr<int64_t>();
  auto* inst_data = instances.data_ptr<uint8_t>();
  const size_t plane = static_cast<size_t>(height) * width;
  for (int y = 0; y < height; ++y) {
    auto* row = canvas.ptr<cv::Vec3b>(y);
    for (int x = 0; x < width; ++x) {
      const size_t p = static_cast<size_t>(y) * width + x;
      const int32_t j = layout.owner[p];
      if (j < 0) continue;
      const Item& item = layout.placed[j];
      const double v = item.intensity[static_cast<size_t>(y - item.y) * item.size + (x - item.x)];
      const double shade = 255.0 * (0.35 + 0.65 * v / 255.0);
      row[x] = cv::Vec3b(clamp_byte(item.rgb[2] * shade), clamp_byte(item.rgb[1] * shade),
                         clamp_byte(item.rgb[0] * shade));
      mask_data[p] = item.label + 1;
      inst_data[j * plane + p] = 1;
      auto& e = extent[j];
      e[0] = std::min(e[0], x);
      e[1] = std::min(e[1], y);
      e[2] = std::max(e[2], x);
      e[3] = std::max(e[3], y);
    }
  }
  at::Tensor boxes = at::zeros({count, 4}, at::kFloat);
  at::Tensor labels = at::empty({count}, at::kLong);
  auto* box_data = boxes.data_ptr<float>();
  for (int64_t j = 0; j < count; ++j) {
    const auto& e = extent[j];
    box_data[j * 4 + 0] = static_cast<float>(e[0]);
    box_data[j * 4 + 1] = static_cast<float>(e[1]);
    box_data[j * 4 + 2] = static_cast<float>(e[2] + 1);
    box_data[j * 4 + 3] = static_cast<float>(e[3] + 1);
    labels.data_ptr<int64_t>()[j] = layout.placed[j].label + 1;
  }

  Sample sample;
  sample.image = core::image_to_tensor(canvas);
  sample.mask = mask;
  sample.instances = instances;
  sample.boxes = boxes;
  sample.labels = labels;
  sample.iscrowd = at::zeros({count}, at::kByte);
  sample.image_id = static_cast<int64_t>(scene_index);
  sample.source = "";
  sample.original_height = height;
  sample.original_width = width;
  return Composed{std::move(sample), canvas};
}

}  // namespace

Sample make_scene(const FashionMnist& items, const SceneOptions& options, uint64_t scene_index) {
  check_scene_options(options);
  return compose(items, options, scene_index).sample;
}

SceneDataset::SceneDataset(FashionMnist items, SceneOptions options, int64_t count)
    : items_(std::move(items)), options_(options), count_(count) {
  check_scene_options(options_);
  TORCH_CHECK(count >= 0, "SceneDataset: count must be >= 0, got ", count);
}

Sample SceneDataset::get(int64_t index) const {
  TORCH_CHECK(index >= 0 && index < count_, "SceneDataset: index ", index, " out of range [0,",
              count_, ")");
  return make_scene(items_, options_, static_cast<uint64_t>(index));
}

std::string scene_name(int64_t index, int64_t count) {
  const int digits = std::max<int>(6, static_cast<int>(std::to_string(std::max<int64_t>(count - 1, 0)).size()));
  std::string number = std::to_string(index);
  if (static_cast<int>(number.size()) < digits) number.insert(0, digits - number.size(), '0');
  return "scene_" + number;
}

namespace {

// Writes a set of files with `fill(staging)` into a sibling staging folder of out_dir, then
// renames it to out_dir: an error leaves no partial out_dir. An existing out_dir is replaced
// only when `ours(out_dir)` says it holds a previous set of this kind (`kind` names it in
// errors).
template <class Fill>
void write_set(const std::string& out_dir, const std::string& kind,
               bool (*ours)(const fs::path&), Fill fill) {
  if (out_dir.empty()) throw IoError("write " + kind + ": empty output folder");
  fs::path out = fs::path(out_dir);
  if (!out.has_filename()) out = out.parent_path();  // "dir/" -> "dir"
  std::error_code ec;
  if (fs::exists(out, ec) && !ours(out)) {
    throw IoError(out.string() + ": exists and is not " + kind + "; refusing to overwrite it");
  }
  const fs::path parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
  fs::create_directories(parent, ec);
  if (ec) throw IoError(parent.string() + ": cannot create folder: " + ec.message());
  const fs::path staging = parent / ("." + out.filename().string() + ".partial-" + unique_suffix());
  try {
    fill(staging);
    if (fs::exists(out, ec)) {
      if (!ours(out)) {
        throw IoError(out.string() + ": appeared while writing and is not " + kind +
                      "; refusing to overwrite it");
      }
      const fs::path old = parent / ("." + out.filename().string() + ".old-" + unique_suffix());
      fs::rename(out, old);
      fs::rename(staging, out);
      fs::remove_all(old, ec);
    } else {
      fs::rename(staging, out);
    }
  } catch (const fs::filesystem_error& e) {
    fs::remove_all(staging, ec);
    throw IoError(out.string() + ": cannot write " + kind + ": " + e.what());
  } catch (...) {
    fs::remove_all(staging, ec);
    throw;
  }
}

// A folder holding only a previous class-folder set: classes.txt and the folders it names.
bool replaceable_classes(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return false;
  std::set<std::string> ours = {"classes.txt"};
  for (const auto& name : item_folder_names()) ours.insert(name);
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (ours.count(entry.path().filename().string()) == 0) return false;
  }
  return !ec && fs::is_regular_file(dir / "classes.txt", ec);
}

}  // namespace

SceneSetSummary write_scenes(const FashionMnist& items, const SceneOptions& options, int64_t count,
                             const std::string& out_dir) {
  check_scene_options(options);
  if (count < 0) bad_option("count must be >= 0, got " + std::to_string(count));
  int64_t next_id = 1;
  write_set(out_dir, "a scene set (instances.json, images/, masks/)", replaceable,
            [&](const fs::path& staging) {
      fs::create_directories(staging / "images");
      fs::create_directories(staging / "masks");

      std::vector<std::vector<io::Json>> annotations(static_cast<size_t>(count));
      std::vector<io::Json> images(static_cast<size_t>(count));
      at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          const Composed scene = compose(items, options, static_cast<uint64_t>(i));
          const Sample& s = scene.sample;
          const std::string name = scene_name(i, count);
          write_png(staging / "images" / (name + ".png"), scene.canvas);
          write_png(staging / "masks" / (name + ".png"), core::mask_to_mat(s.mask));
          images[i] = {{"id", i},
                       {"file_name", name + ".png"},
                       {"height", options.height()},
                       {"width", options.width()}};
          auto& anns = annotations[i];
          const auto* box = s.boxes.data_ptr<float>();
          for (int64_t k = 0; k < s.labels.size(0); ++k) {
            const ops::Rle rle = ops::rle_encode(s.instances[k]);
            const auto x1 = static_cast<int64_t>(box[k * 4]), y1 = static_cast<int64_t>(box[k * 4 + 1]);
            const auto x2 = static_cast<int64_t>(box[k * 4 + 2]), y2 = static_cast<int64_t>(box[k * 4 + 3]);
            anns.push_back({{"image_id", i},
                            {"category_id", s.labels[k].item<int64_t>()},
                            {"bbox", {x1, y1, x2 - x1, y2 - y1}},
                            {"area", ops::rle_area(rle)},
                            {"iscrowd", 0},
                            {"segmentation",
                             {{"size", {rle.height, rle.width}}, {"counts", ops::rle_to_string(rle)}}}});
          }
        }
      });

      io::Json coco;
      coco["info"] = {{"description", "ostrov scenes composed from Fashion-MNIST items"},
                      {"count", count},
                      {"seed", options.seed()},
                      {"height", options.height()},
                      {"width", options.width()},
                      {"min_items", options.min_items()},
                      {"max_items", options.max_items()},
                      {"min_scale", options.min_scale()},
                      {"max_scale", options.max_scale()},
                      {"max_overlap", options.max_overlap()},
                      {"allow_touching", options.allow_touching()},
                      {"background", to_string(options.background())},
                      {"threshold", options.threshold()},
                      {"min_visible_pixels", options.min_visible_pixels()},
                      {"fashion_mnist_split",
                       items.split() == FashionMnistSplit::kTrain ? "train" : "test"}};
      coco["images"] = io::Json::array();
      for (auto& image : images) coco["images"].push_back(std::move(image));
      coco["annotations"] = io::Json::array();
      for (auto& anns : annotations) {
        for (auto& ann : anns) {
          ann["id"] = next_id++;
          coco["annotations"].push_back(std::move(ann));
        }
      }
      coco["categories"] = io::Json::array();
      const auto& names = FashionMnist::class_names();
      for (size_t c = 0; c < names.size(); ++c) {
        coco["categories"].push_back(
            {{"id", static_cast<int64_t>(c + 1)}, {"name", names[c]}, {"supercategory", "fashion"}});
      }
      io::write_json((staging / "instances.json").string(), coco);
    });
  return SceneSetSummary{count, next_id - 1};
}

const std::vector<std::string>& item_folder_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    const auto& classes = FashionMnist::class_names();
    for (size_t c = 0; c < classes.size(); ++c) {
      std::string name = std::to_string(c) + "_" + classes[c];
      std::replace_if(name.begin(), name.end(), [](char ch) { return ch == '/' || ch == ' '; },
                      '_');
      out.push_back(name);
    }
    return out;
  }();
  return names;
}

int64_t write_item_folders(const FashionMnist& items, const SceneOptions& options, int64_t count,
                           const std::string& out_dir) {
  check_scene_options(options);
  if (options.min_items() != 1 || options.max_items() != 1) {
    bad_option("class folders need exactly one item per scene (min_items = max_items = 1), got " +
               std::to_string(options.min_items()) + ".." + std::to_string(options.max_items()));
  }
  if (count < 0) bad_option("count must be >= 0, got " + std::to_string(count));
  const auto& folders = item_folder_names();
  write_set(out_dir, "a class-folder set (classes.txt and one folder per class)",
            replaceable_classes, [&](const fs::path& staging) {
              for (const auto& name : folders) fs::create_directories(staging / name);
              at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
                for (int64_t i = begin; i < end; ++i) {
                  const Composed scene = compose(items, options, static_cast<uint64_t>(i));
                  if (scene.sample.labels.numel() != 1) {
                    throw DataError("write_item_folders: scene " + std::to_string(i) + " has " +
                                    std::to_string(scene.sample.labels.numel()) +
                                    " items instead of 1 (canvas too small for max_scale?)");
                  }
                  const int64_t label = scene.sample.labels[0].item<int64_t>();  // 1..10
                  write_png(staging / folders[label - 1] / (scene_name(i, count) + ".png"),
                            scene.canvas);
                }
              });
              std::ofstream list(staging / "classes.txt");
              for (const auto& name : folders) list << name << '\n';
              list.close();
              if (!list) throw IoError((staging / "classes.txt").string() + ": cannot write");
            });
  return count;
}

}  // namespace ostrov::data
