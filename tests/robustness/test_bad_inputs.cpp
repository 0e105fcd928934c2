// The bad-input corpus (issue 12, "Reliability"): real bad files made at test time from valid
// ones (truncated and odd images, inconsistent masks, broken COCO JSON, bad configs, cut
// checkpoints, mismatched torchvision state_dicts), each checked through the library API and
// through the `ostrov` CLI. For every case: the documented exception or exit code (0 ok, 1 data
// or runtime error, 2 usage or config error), a message that names the file (and the key or the
// annotation id), no death by a signal, and no partial output left behind.
//
// Each TEST_CASE counts its cases and checks the count at its end, so a case that silently
// stops running fails the test: 16 images + 12 masks + 19 COCO + 25 configs + 12 checkpoints
// + 7 state_dicts = 91 cases. (Variants tested elsewhere, e.g. the COCO ones of
// tests/data/test_coco_dataset.cpp, are left out: every CLI run costs ~0.5 s of start-up.)
#include "catch.h"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "ostrov/core/error.h"
#include "ostrov/core/image.h"
#include "ostrov/data/coco_dataset.h"
#include "ostrov/data/folder_dataset.h"
#include "ostrov/io/checkpoint.h"
#include "ostrov/io/json.h"
#include "ostrov/io/state_dict.h"
#include "ostrov/io/weights.h"
#include "ostrov/models/backbones/resnet.h"
#include "ostrov/models/build.h"
#include "ostrov/ops/instance.h"
#include "support.h"

using namespace ostrov;
using Json = nlohmann::json;
using ostrov::test::quote;
using ostrov::test::TempDir;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kSceneClasses = 11;  // Fashion-MNIST's 10 + background

std::string cli() { return std::string(OSTROV_CLI); }

struct CliResult {
  int exit_code = -1;
  std::string out;  ///< stdout
  std::string err;  ///< stderr
};

// Runs `ostrov ARGS` with stdout and stderr captured apart (errors belong on stderr).
CliResult run_cli(const std::string& args) {
  static TempDir logs;
  static int count = 0;
  const std::string err = logs / ("stderr_" + std::to_string(count++) + ".txt");
  const auto r = test::run(cli() + " " + args + " 2>" + quote(err));
  return {r.exit_code, r.output, test::read_bytes(err)};
}

// The documented exit code, no signal, and stderr naming every string of `names`.
void check_exit(const CliResult& r, int code, const std::vector<std::string>& names) {
  INFO("ostrov exited " << r.exit_code << "\nstdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.exit_code < 128);  // run() reports a signal as 128 + its number
  CHECK(r.exit_code == code);
  for (const auto& name : names) CHECK_THAT(r.err, Catch::Contains(name));
}

// Every regular file under `dir`, relative and sorted; empty when `dir` does not exist.
std::vector<std::string> files_under(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) files.push_back(fs::relative(e.path(), dir).string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// A failed `ostrov train --out DIR` leaves no checkpoint, plot or temporary file in DIR; only
// the record of the steps that did run may be there: metrics.jsonl, train.log and the run's
// config.json (written with the first step).
void check_no_training_output(const std::string& out) {
  for (const auto& file : files_under(out)) {
    INFO("left in " << out << ": " << file);
    CHECK((file == "metrics.jsonl" || file == "train.log" || file == "config.json"));
  }
}

enum class Expect { kLoads, kIoError, kDataError };

// Runs `f`; returns the message of the exception `expect` asks for (a failed check when `f`
// throws another type or nothing). kLoads: `f` must not throw.
std::string api_outcome(Expect expect, const std::function<void()>& f) {
  try {
    f();
  } catch (const IoError& e) {
    CHECK(expect == Expect::kIoError);
    return e.what();
  } catch (const DataError& e) {
    CHECK(expect == Expect::kDataError);
    return e.what();
  } catch (const std::exception& e) {
    FAIL_CHECK("unexpected exception type: " << e.what());
    return e.what();
  }
  CHECK(expect == Expect::kLoads);
  return {};
}

void check_names(const std::string& message, const std::vector<std::string>& names) {
  INFO("message: " << message);
  for (const auto& name : names) CHECK_THAT(message, Catch::Contains(name));
}

// `ostrov train CONFIG --out DIR/<name>_out` on a case's data: trains when the data loads;
// otherwise the API's `message` and the CLI (exit 1) name `names`, and no training output is
// left.
void check_train_outcome(const TempDir& dir, const std::string& name, const std::string& config,
                         Expect expect, const std::string& message,
                         const std::vector<std::string>& names) {
  const std::string out = dir / (name + "_out");
  const CliResult r = run_cli("train " + quote(config) + " --out " + quote(out));
  if (expect == Expect::kLoads) {
    check_exit(r, 0, {});
    CHECK(fs::exists(out + "/last.pt"));
  } else {
    check_names(message, names);
    check_exit(r, 1, names);
    check_no_training_output(out);
  }
}

std::string write_text(const std::string& path, const std::string& text) {
  test::write_bytes(path, text);
  return path;
}

std::string write_config(const std::string& path, const Json& config) {
  return write_text(path, config.dump(2));
}

std::string encode(const std::string& ext, const cv::Mat& image) {
  std::vector<uchar> buffer;
  REQUIRE(cv::imencode(ext, image, buffer));
  return std::string(buffer.begin(), buffer.end());
}

// Made once for the whole file: 4 scenes of 64x64 (a segmentation folder and a COCO file),
// a tiny U-Net config over them, and the checkpoint `ostrov train` writes for it.
struct Workspace {
  TempDir dir;
  std::string scenes;
  Json config_json;
  std::string config;
  std::string checkpoint;

  Workspace() {
    scenes = dir / "scenes";
    const auto s = test::run(
        cli() + " make-scenes --count 4 --size 64x64 --seed 1 --out " + quote(scenes), true);
    if (s.exit_code != 0) throw std::runtime_error("ostrov make-scenes failed: " + s.output);
    config_json = {
        {"task", "segmentation"},
        {"data",
         {{"format", "folder"},
          {"train", {{"root", scenes}}},
          {"val", {{"root", scenes}}},
          {"num_classes", kSceneClasses},
          {"image_size", {32, 32}}}},
        {"model", {{"name", "unet"}, {"depth", 2}, {"base_width", 4}}},
        {"loss", {{"name", "cross_entropy"}}},
        {"train",
         {{"epochs", 1}, {"batch_size", 2}, {"optimizer", "adam"}, {"lr", 0.01}, {"workers", 0},
          {"seed", 3}, {"log_every", 1}, {"threads", 1}}}};
    config = write_config(dir / "run.json", config_json);
    const auto t = test::run(cli() + " train " + quote(config) + " --out " + quote(dir / "run"), true);
    if (t.exit_code != 0) throw std::runtime_error("ostrov train failed: " + t.output);
    checkpoint = dir / "run/last.pt";
  }

  // The config for training on `train` (a Json split object) only, 2 steps of 2 images.
  Json train_only(const Json& data_overrides) const {
    Json c = config_json;
    c["data"].erase("val");
    if (data_overrides.is_object()) c["data"].update(data_overrides);
    c["train"]["max_steps"] = 2;
    return c;
  }
};

const Workspace& workspace() {
  static const Workspace w;
  return w;
}

// A copy of the scenes' segmentation folder (images/ and masks/) at `root`.
void copy_folder(const Workspace& ws, const std::string& root) {
  fs::create_directories(root);
  fs::copy(ws.scenes + "/images", root + "/images", fs::copy_options::recursive);
  fs::copy(ws.scenes + "/masks", root + "/masks", fs::copy_options::recursive);
}

}  // namespace

TEST_CASE("bad images: core::read_image and ostrov predict", "[robustness]") {
  const Workspace& ws = workspace();
  TempDir dir;
  cv::RNG rng(12);
  cv::Mat bgr(40, 48, CV_8UC3);
  rng.fill(bgr, cv::RNG::UNIFORM, 0, 256);
  const std::string png = encode(".png", bgr);
  const std::string jpg = encode(".jpg", bgr);
  cv::Mat bgra;
  cv::cvtColor(bgr, bgra, cv::COLOR_BGR2BGRA);
  std::vector<cv::Mat> planes;
  cv::split(bgra, planes);
  rng.fill(planes[3], cv::RNG::UNIFORM, 0, 256);  // a real alpha channel, not all 255
  cv::merge(planes, bgra);
  cv::Mat grey;
  cv::cvtColor(bgr, grey, cv::COLOR_BGR2GRAY);
  cv::Mat deep;
  bgr.convertTo(deep, CV_16UC3, 257.0);
  // A PNG whose first IDAT byte is flipped: complete container, CRC mismatch inside.
  std::string bad_crc = png;
  const size_t idat = bad_crc.find("IDAT");
  REQUIRE(idat != std::string::npos);
  bad_crc[idat + 4] = static_cast<char>(bad_crc[idat + 4] ^ 0xFF);

  struct Case {
    std::string file;
    std::string bytes;
    Expect expect;
    std::string reason;  // a part of the message besides the path
  };
  const std::vector<Case> cases = {
      {"png_cut_8.png", png.substr(0, 8), Expect::kIoError, "truncated PNG"},
      {"png_cut_half.png", png.substr(0, png.size() / 2), Expect::kIoError, "truncated PNG"},
      {"png_cut_last.png", png.substr(0, png.size() - 1), Expect::kIoError, "truncated PNG"},
      {"png_bad_crc.png", bad_crc, Expect::kIoError, ""},
      {"jpg_cut_10.jpg", jpg.substr(0, 10), Expect::kIoError, "truncated JPEG"},
      {"jpg_cut_half.jpg", jpg.substr(0, jpg.size() / 2), Expect::kIoError, "truncated JPEG"},
      {"jpg_cut_eoi.jpg", jpg.substr(0, jpg.size() - 2), Expect::kIoError, "truncated JPEG"},
      {"empty.png", "", Expect::kIoError, "empty file"},
      {"text.png", "not an image, just text\n", Expect::kIoError, "not a readable image"},
      // A DICOM preamble (128 bytes + "DICM") with a broken header: OpenCV would hand it to
      // GDCM, which aborts the process on an assert (found by fuzz_image); refused by signature.
      {"dicom.png", std::string(128, '\0') + ":DICM//\xc0", Expect::kIoError,
       "not PNG, JPEG, BMP, TIFF, WebP or binary PGM/PPM"},
      // Binary PGM (torchvision's .pgm) loads; cut short or with a broken header it is refused;
      // ASCII PNM, which OpenCV also reads, is not accepted.
      {"pnm.png", encode(".pgm", grey), Expect::kLoads, ""},
      {"pnm_cut.pgm", encode(".pgm", grey).substr(0, encode(".pgm", grey).size() - 7),
       Expect::kIoError, "truncated PGM/PPM"},
      {"pnm_header.pgm", "P5\n48 x\n255\n" + std::string(40 * 48, '\0'), Expect::kIoError,
       "malformed PGM/PPM header"},
      {"ascii.pgm", "P2\n2 1\n255\n0 255\n", Expect::kIoError, "not a readable image"},
      // image.h: read_image returns 8-bit BGR; a 16-bit file is refused, not silently scaled.
      {"deep16.png", encode(".png", deep), Expect::kIoError, "16-bit"},
      // 4 channels: alpha dropped; grey: repeated; a JPEG named .png: the content decides.
      {"alpha.png", encode(".png", bgra), Expect::kLoads, ""},
      {"grey.png", encode(".png", grey), Expect::kLoads, ""},
      {"jpeg_named.png", jpg, Expect::kLoads, ""},
  };
  int count = 0;
  for (const auto& c : cases) {
    ++count;
    const std::string path = write_text(dir / c.file, c.bytes);
    const std::string out = dir / ("out_" + c.file);
    INFO("case " << c.file);
    // API.
    cv::Mat image;
    const std::string message = api_outcome(c.expect, [&] { image = core::read_image(path); });
    const CliResult r = run_cli("predict " + quote(ws.config) + " --checkpoint " +
                                quote(ws.checkpoint) + " --input " + quote(path) + " --output " +
                                quote(out));
    if (c.expect == Expect::kLoads) {
      REQUIRE(image.type() == CV_8UC3);
      CHECK(image.rows == 40);
      CHECK(image.cols == 48);
      if (c.file == "alpha.png") CHECK(cv::norm(image, bgr, cv::NORM_INF) == 0.0);
      if (c.file == "grey.png" || c.file == "pnm.png") {
        std::vector<cv::Mat> channels;
        cv::split(image, channels);
        for (const auto& ch : channels) CHECK(cv::norm(ch, grey, cv::NORM_INF) == 0.0);
      }
      check_exit(r, 0, {});
      const std::string stem = fs::path(c.file).stem().string();
      const at::Tensor prediction = core::read_mask(out + "/" + stem + ".png");
      CHECK(prediction.sizes() == at::IntArrayRef({40, 48}));
      CHECK(fs::exists(out + "/" + stem + "_overlay.png"));
    } else {
      check_names(message, {path, c.reason});
      check_exit(r, 1, {path, c.reason});
      CHECK(files_under(out).empty());  // nothing written for the bad image
    }
  }
  {  // A missing file and a folder where an image should be.
    ++count;
    const std::string missing = dir / "missing.png";
    check_names(api_outcome(Expect::kIoError, [&] { core::read_image(missing); }),
                {missing, "no such file"});
    const std::string out = dir / "out_missing";
    check_exit(run_cli("predict " + quote(ws.config) + " --checkpoint " + quote(ws.checkpoint) +
                       " --input " + quote(missing) + " --output " + quote(out)),
               1, {missing});
    CHECK(files_under(out).empty());
    fs::create_directories(dir / "folder.png");
    check_names(api_outcome(Expect::kIoError, [&] { core::read_image(dir / "folder.png"); }),
                {dir / "folder.png", "is a directory"});
  }
  CHECK(count == 19);
}

TEST_CASE("bad masks and pairs: data::SegmentationFolder and ostrov train", "[robustness]") {
  const Workspace& ws = workspace();
  TempDir dir;
  const std::string first = "scene_000000.png";
  auto read_raw = [](const std::string& path) { return cv::imread(path, cv::IMREAD_UNCHANGED); };
  auto set_label = [&](int label) {
    return [&, label](const std::string& root) {
      cv::Mat m = read_raw(root + "/masks/" + first);
      m.at<uchar>(3, 5) = static_cast<uchar>(label);
      core::write_image(root + "/masks/" + first, m);
    };
  };
  struct Case {
    std::string name;
    std::function<void(const std::string& root)> damage;
    Expect expect;
    std::string file;    // the file the message names, relative to the case's root
    std::string reason;
  };
  const std::vector<Case> cases = {
      {"mask_wrong_size",
       [&](const std::string& root) {
         core::write_image(root + "/masks/" + first, cv::Mat::zeros(32, 32, CV_8UC1));
       },
       Expect::kDataError, "masks/" + first, "but its image"},
      {"label_num_classes", set_label(11), Expect::kDataError, "masks/" + first, "label 11"},
      {"label_200", set_label(200), Expect::kDataError, "masks/" + first, "label 200"},
      {"label_ignore_255", set_label(255), Expect::kLoads, "", ""},
      {"mask_16bit",
       [&](const std::string& root) {
         cv::Mat m;
         read_raw(root + "/masks/" + first).convertTo(m, CV_16U);
         core::write_image(root + "/masks/" + first, m);
       },
       Expect::kIoError, "masks/" + first, "16-bit"},
      {"mask_colour",
       [&](const std::string& root) {
         cv::Mat m;
         cv::cvtColor(read_raw(root + "/masks/" + first), m, cv::COLOR_GRAY2BGR);
         core::write_image(root + "/masks/" + first, m);
       },
       Expect::kIoError, "masks/" + first, "1 channel"},
      // PASCAL VOC stores class masks as palette PNGs: the palette index is the class.
      {"mask_palette",
       [&](const std::string& root) {
         const std::string p = root + "/masks/" + first;
         const auto py = test::run_python(dir, "from PIL import Image\n"
                                               "import numpy as np\n"
                                               "m = np.array(Image.open('" + p + "'))\n"
                                               "q = Image.fromarray(m, mode='P')\n"
                                               "q.putpalette([(i * 37) % 256 for i in range(768)])\n"
                                               "q.save('" + p + "')\n");
         INFO(py.output);
         REQUIRE(py.exit_code == 0);
         REQUIRE(test::read_bytes(p)[25] == 3);  // PNG colour type 3: palette
       },
       Expect::kLoads, "", ""},
      {"mask_truncated",
       [&](const std::string& root) {
         const std::string p = root + "/masks/" + first;
         const std::string bytes = test::read_bytes(p);
         test::write_bytes(p, bytes.substr(0, bytes.size() / 2));
       },
       Expect::kIoError, "masks/" + first, "truncated PNG"},
      {"mask_empty", [&](const std::string& root) { test::write_bytes(root + "/masks/" + first, ""); },
       Expect::kIoError, "masks/" + first, "empty file"},
      {"mask_missing", [&](const std::string& root) { fs::remove(root + "/masks/" + first); },
       Expect::kDataError, "images", "without a mask: " + first},
      {"image_truncated",
       [&](const std::string& root) {
         const std::string p = root + "/images/" + first;
         const std::string bytes = test::read_bytes(p);
         test::write_bytes(p, bytes.substr(0, bytes.size() - 1));
       },
       Expect::kIoError, "images/" + first, "truncated PNG"},
      {"image_text", [&](const std::string& root) { test::write_bytes(root + "/images/" + first, "hello\n"); },
       Expect::kIoError, "images/" + first, "not a readable image"},
  };
  int count = 0;
  for (const auto& c : cases) {
    ++count;
    INFO("case " << c.name);
    const std::string root = dir / c.name;
    copy_folder(ws, root);
    c.damage(root);
    const std::string file = root + "/" + c.file;
    const std::string message = api_outcome(c.expect, [&] {
      data::SegmentationFolder folder(root, kSceneClasses);
      for (int64_t i = 0; i < folder.size(); ++i) folder.get(i);
    });
    const std::string config =
        write_config(dir / (c.name + ".json"), ws.train_only({{"train", {{"root", root}}}}));
    check_train_outcome(dir, c.name, config, c.expect, message, {file, c.reason});
  }
  CHECK(count == 12);
}

TEST_CASE("bad COCO files: data::CocoDataset and ostrov train", "[robustness]") {
  const Workspace& ws = workspace();
  TempDir dir;
  const Json base = io::read_json(ws.scenes + "/instances.json");
  const std::string images = ws.scenes + "/images";
  REQUIRE(base["annotations"].size() >= 3);
  REQUIRE(base["images"].size() >= 2);
  REQUIRE(base["annotations"][0]["image_id"] == base["images"][0]["id"]);
  const auto id = [&](size_t k) { return base["annotations"][k]["id"].get<int64_t>(); };
  const auto ann_id = [&](size_t k) { return "annotation id " + std::to_string(id(k)); };
  const std::string image0 = images + "/" + base["images"][0]["file_name"].get<std::string>();
  // A compressed RLE of a 63x64 mask labelled 64x64: its counts sum to 4032, not 4096.
  const std::string short_rle = ops::rle_to_string(ops::rle_encode(at::ones({63, 64}, at::kByte)));

  struct Case {
    std::string name;
    std::function<void(Json&)> edit;  // applied to a copy of the scenes' instances.json
    std::string raw;                  // used instead when edit is empty
    Expect expect;
    std::vector<std::string> names;   // besides the JSON file (unless names_file is false)
    bool names_json = true;
  };
  auto set_ann = [](size_t k, const std::string& key, Json value) {
    return [k, key, value](Json& j) { j["annotations"][k][key] = value; };
  };
  const std::string text = base.dump(1);
  const std::vector<Case> cases = {
      {"truncated", {}, text.substr(0, text.size() / 2), Expect::kDataError, {"malformed JSON"}},
      {"empty", {}, "", Expect::kDataError, {":1:1", "malformed JSON"}},
      {"not_object", {}, "[1, 2]", Expect::kDataError, {"JSON object"}},
      {"no_images", [](Json& j) { j.erase("images"); }, "", Expect::kDataError, {"\"images\""}},
      {"duplicate_image_id",
       [](Json& j) { j["images"][1]["id"] = j["images"][0]["id"]; }, "", Expect::kDataError,
       {"duplicate image id " + base["images"][0]["id"].dump()}},
      {"duplicate_annotation_id", set_ann(1, "id", id(0)), "", Expect::kDataError,
       {ann_id(0), "duplicate annotation id"}},
      {"dangling_image_id", set_ann(2, "image_id", 999), "", Expect::kDataError,
       {ann_id(2), "unknown image id 999"}},
      {"dangling_category_id", set_ann(2, "category_id", 77), "", Expect::kDataError,
       {ann_id(2), "unknown category id 77"}},
      {"box_zero_width", set_ann(0, "bbox", {5, 5, 0, 4}), "", Expect::kDataError,
       {ann_id(0), "degenerate"}},
      {"box_negative_corner", set_ann(0, "bbox", {-4, 5, 3, 3}), "", Expect::kDataError,
       {ann_id(0), "has a negative corner"}},
      {"box_outside", set_ann(0, "bbox", {60, 10, 10, 10}), "", Expect::kDataError,
       {ann_id(0), "reaches outside its image"}},
      {"box_not_numbers", set_ann(0, "bbox", {1, "x", 2, 2}), "", Expect::kDataError,
       {ann_id(0), "bbox must hold 4 numbers"}},
      {"polygon_2_points", set_ann(1, "segmentation", {{10.0, 10.0, 20.0, 20.0}}), "",
       Expect::kDataError, {ann_id(1), "invalid polygon 0"}},
      {"rle_uncompressed_total",
       set_ann(1, "segmentation", {{"counts", {10, 20, 30}}, {"size", {64, 64}}}), "",
       Expect::kDataError, {ann_id(1), "counts sum to 60"}},
      {"rle_compressed_total",
       set_ann(1, "segmentation", {{"counts", short_rle}, {"size", {64, 64}}}), "",
       Expect::kDataError, {ann_id(1), "4032"}},
      {"rle_wrong_size",
       set_ann(1, "segmentation", {{"counts", {1024}}, {"size", {32, 32}}}), "",
       Expect::kDataError, {ann_id(1), "RLE size [32, 32]"}},
      // A self-intersecting polygon (a bow tie) is valid COCO: filled by the even-odd rule.
      {"polygon_self_intersecting",
       set_ann(0, "segmentation", {{10.0, 10.0, 30.0, 30.0, 30.0, 10.0, 10.0, 30.0}}), "",
       Expect::kLoads, {}},
      // Found when the image is read: the file is missing, or its size is not the JSON's.
      {"image_missing", [](Json& j) { j["images"][0]["file_name"] = "gone.png"; }, "",
       Expect::kIoError, {images + "/gone.png"}, /*names_json=*/false},
      {"image_wrong_size",
       [](Json& j) {  // image 0 without its annotations, whose RLE sizes would be checked first
         j["images"][0]["height"] = 65;
         Json kept = Json::array();
         for (const auto& a : j["annotations"]) {
           if (a["image_id"] != j["images"][0]["id"]) kept.push_back(a);
         }
         j["annotations"] = kept;
       },
       "", Expect::kDataError,
       {image0, "image id " + base["images"][0]["id"].dump()}},
  };
  int count = 0;
  for (const auto& c : cases) {
    ++count;
    INFO("case " << c.name);
    const std::string file = dir / (c.name + ".json");
    if (c.edit) {
      Json j = base;
      c.edit(j);
      write_text(file, j.dump(1));
    } else {
      write_text(file, c.raw);
    }
    std::vector<std::string> names = c.names;
    if (c.names_json) names.push_back(file);
    const std::string message = api_outcome(c.expect, [&] {
      data::CocoDataset coco(file, images);
      for (int64_t i = 0; i < coco.size(); ++i) {
        const data::Sample s = coco.get(i);
        if (c.expect == Expect::kLoads && i == 0) CHECK(s.instances[0].sum().item<int64_t>() > 0);
      }
    });
    const std::string config = write_config(
        dir / (c.name + "_run.json"),
        ws.train_only({{"format", "coco"}, {"train", {{"annotations", file}, {"images", images}}}}));
    check_train_outcome(dir, c.name, config, c.expect, message, names);
  }
  CHECK(count == 19);
}

TEST_CASE("bad configs: ostrov train and eval exit 2 naming the file and the key", "[robustness]") {
  const Workspace& ws = workspace();
  TempDir dir;
  struct Case {
    std::string name;
    std::function<void(Json&)> edit;  // applied to a copy of the workspace's config
    std::string raw;                  // used instead when edit is empty
    std::string key;                  // the key path the message must name
    int code = 2;
    std::string extra_args = {};  // default member initializer: no -Wmissing-field-initializers
  };
  const std::vector<Case> cases = {
      {"unknown_top_key", [](Json& j) { j["trian"] = {{"epochs", 1}}; }, "", "trian"},
      {"unknown_data_key", [](Json& j) { j["data"]["train"]["roots"] = "x"; }, "", "data.train.roots"},
      {"unknown_model_key", [](Json& j) { j["model"]["depht"] = 3; }, "", "model.depht"},
      {"epochs_string", [](Json& j) { j["train"]["epochs"] = "two"; }, "", "train.epochs"},
      {"image_size_string", [](Json& j) { j["data"]["image_size"] = "32x32"; }, "", "data.image_size"},
      {"image_size_negative", [](Json& j) { j["data"]["image_size"] = {-1, 32}; }, "",
       "data.image_size[0]"},
      {"image_size_one_number", [](Json& j) { j["data"]["image_size"] = {32}; }, "",
       "data.image_size"},
      {"batch_size_zero", [](Json& j) { j["train"]["batch_size"] = 0; }, "", "train.batch_size"},
      {"workers_negative", [](Json& j) { j["train"]["workers"] = -1; }, "", "train.workers"},
      {"lr_negative", [](Json& j) { j["train"]["lr"] = -0.1; }, "", "train.lr"},
      {"optimizer_unknown", [](Json& j) { j["train"]["optimizer"] = "rmsprop"; }, "",
       "train.optimizer"},
      {"schedule_unknown", [](Json& j) { j["train"]["schedule"] = "exponential"; }, "",
       "train.schedule"},
      {"num_classes_zero", [](Json& j) { j["data"]["num_classes"] = 0; }, "", "data.num_classes"},
      {"num_classes_300", [](Json& j) { j["data"]["num_classes"] = 300; }, "", "data.num_classes"},
      {"num_classes_missing", [](Json& j) { j["data"].erase("num_classes"); }, "",
       "data.num_classes"},
      {"train_root_missing", [](Json& j) { j["data"]["train"]["root"] = "/no/such/folder"; }, "",
       "data.train.root"},
      {"val_root_is_a_file", [&](Json& j) { j["data"]["val"]["root"] = ws.config; }, "",
       "data.val.root"},
      {"coco_annotations_missing",
       [&](Json& j) {
         j["data"]["format"] = "coco";
         j["data"]["train"] = {{"annotations", "/no/such/instances.json"},
                               {"images", ws.scenes + "/images"}};
         j["data"].erase("val");
       },
       "", "data.train.annotations"},
      {"format_unknown", [](Json& j) { j["data"]["format"] = "csv"; }, "", "data.format"},
      {"model_unknown", [](Json& j) { j["model"]["name"] = "unet3"; }, "", "model.name"},
      {"loss_unknown", [](Json& j) { j["loss"]["name"] = "dice_of_doom"; }, "", "loss.name"},
      {"not_an_object", {}, "[1, 2, 3]", "must be a JSON object"},
      {"malformed", {}, "{\n  \"task\": \"segmentation\",\n  \"data\": {\n", ":4:"},
      {"set_without_value", [](Json&) {}, "", "train.lr", 2, "--set train.lr"},
  };
  int count = 0;
  for (const auto& c : cases) {
    ++count;
    INFO("case " << c.name);
    const std::string file = dir / (c.name + ".json");
    if (c.edit) {
      Json j = ws.config_json;
      c.edit(j);
      write_config(file, j);
    } else {
      write_text(file, c.raw);
    }
    const std::string out = dir / (c.name + "_out");
    const CliResult r =
        run_cli("train " + quote(file) + " --out " + quote(out) + " " + c.extra_args);
    // A bad --set names the key it was given; every other error names the file too.
    check_exit(r, c.code,
               c.extra_args.empty() ? std::vector<std::string>{file, c.key}
                                    : std::vector<std::string>{c.key});
    CHECK(files_under(out).empty());
    if (c.name == "batch_size_zero") {  // eval reads the same config: the same error
      const CliResult e = run_cli("eval " + quote(file) + " --checkpoint " + quote(ws.checkpoint));
      check_exit(e, 2, {file, c.key});
      CHECK(e.out.empty());
    }
  }
  {  // A config file that does not exist: an I/O error (1) naming it.
    ++count;
    const std::string missing = dir / "missing.json";
    check_exit(run_cli("train " + quote(missing) + " --out " + quote(dir / "missing_out")), 1,
               {missing});
    CHECK(files_under(dir / "missing_out").empty());
  }
  CHECK(count == 25);
}

TEST_CASE("bad checkpoints: io::load_checkpoint and ostrov eval, predict, train --resume", "[robustness]") {
  const Workspace& ws = workspace();
  TempDir dir;
  const std::string good = test::read_bytes(ws.checkpoint);
  REQUIRE(good.size() > 100);
  std::string flipped = good;
  flipped[good.size() / 2] = static_cast<char>(flipped[good.size() / 2] ^ 0x5A);
  // A valid zip that is not an ostrov checkpoint: a torch.save-style state dict.
  const auto model = models::build(ws.config_json["model"], kSceneClasses, ws.config);
  io::save_state_dict(io::module_state_dict(*model.module), dir / "state_dict.pt");

  struct Case {
    std::string file;
    std::string bytes;  // empty with from_file: already written
    std::string reason;
  };
  const std::vector<Case> cases = {
      {"cut_0.pt", good.substr(0, 0), "empty"},
      {"cut_10.pt", good.substr(0, 10), "truncated or corrupt"},
      {"cut_half.pt", good.substr(0, good.size() / 2), "truncated or corrupt"},
      {"cut_last.pt", good.substr(0, good.size() - 1), "truncated or corrupt"},
      {"flipped.pt", flipped, "corrupt"},
      {"text.pt", "this is not a checkpoint\n", "not an ostrov checkpoint"},
      {"state_dict.pt", test::read_bytes(dir / "state_dict.pt"), "no 'payload' record"},
  };
  auto snapshot = [](const torch::nn::Module& m) {
    std::vector<at::Tensor> values;
    for (const auto& item : io::module_state_dict(m)) values.push_back(item.value().clone());
    return values;
  };
  auto unchanged = [](const torch::nn::Module& m, const std::vector<at::Tensor>& before) {
    const auto now = io::module_state_dict(m);
    if (now.size() != before.size()) return false;
    for (size_t i = 0; i < before.size(); ++i) {
      if (!at::equal(now[i].value(), before[i])) return false;
    }
    return true;
  };
  const auto before = snapshot(*model.module);
  int count = 0;
  for (const auto& c : cases) {
    ++count;
    INFO("case " << c.file);
    const std::string path = write_text(dir / c.file, c.bytes);
    check_names(api_outcome(Expect::kIoError, [&] { io::load_checkpoint(path, *model.module); }),
                {path, c.reason});
    CHECK(unchanged(*model.module, before));
    const CliResult r = run_cli("eval " + quote(ws.config) + " --checkpoint " + quote(path));
    check_exit(r, 1, {path, c.reason});
    CHECK(r.out.empty());  // no metrics printed
  }
  {  // API only: a sweep of 32 more cut points (the zip reader must never crash or accept one).
    ++count;
    const std::string path = dir / "sweep.pt";
    for (size_t k = 1; k < 33; ++k) {
      const size_t size = good.size() * k / 33;
      INFO("cut at " << size << " of " << good.size() << " bytes");
      test::write_bytes(path, good.substr(0, size));
      check_names(api_outcome(Expect::kIoError, [&] { io::load_checkpoint(path, *model.module); }),
                  {path});
    }
    CHECK(unchanged(*model.module, before));
  }
  {  // A checkpoint of another model (base_width 8 instead of 4).
    ++count;
    Json other = ws.config_json["model"];
    other["base_width"] = 8;
    const auto wider = models::build(other, kSceneClasses, ws.config);
    const auto wider_before = snapshot(*wider.module);
    check_names(api_outcome(Expect::kIoError, [&] { io::load_checkpoint(ws.checkpoint, *wider.module); }),
                {ws.checkpoint, "does not match the model", "wrong shape"});
    CHECK(unchanged(*wider.module, wider_before));
    const CliResult r = run_cli("eval " + quote(ws.config) + " --checkpoint " +
                                quote(ws.checkpoint) + " --set model.base_width=8");
    check_exit(r, 1, {ws.checkpoint, "does not match the model"});
    CHECK(r.out.empty());
  }
  {  // The good checkpoint loads (the cases above fail for what they are, not for the model).
    ++count;
    api_outcome(Expect::kLoads, [&] { io::load_checkpoint(ws.checkpoint, *model.module); });
    check_exit(run_cli("eval " + quote(ws.config) + " --checkpoint " + quote(ws.checkpoint)), 0, {});
  }
  {  // predict with a cut checkpoint writes nothing, not even its output folder.
    ++count;
    const std::string path = dir / "cut_half.pt";
    const std::string out = dir / "predict_out";
    check_exit(run_cli("predict " + quote(ws.config) + " --checkpoint " + quote(path) +
                       " --input " + quote(ws.scenes + "/images") + " --output " + quote(out)),
               1, {path});
    CHECK_FALSE(fs::exists(out));
  }
  {  // train --resume from a cut last.pt: an error naming it, and the file left as it was.
    ++count;
    const std::string out = dir / "resume";
    fs::create_directories(out);
    const std::string cut = good.substr(0, good.size() / 2);
    test::write_bytes(out + "/last.pt", cut);
    const CliResult r =
        run_cli("train " + quote(ws.config) + " --out " + quote(out) + " --resume");
    check_exit(r, 1, {out + "/last.pt", "truncated or corrupt"});
    CHECK(test::read_bytes(out + "/last.pt") == cut);
    CHECK(files_under(out) == std::vector<std::string>{"last.pt"});
  }
  CHECK(count == 12);
}

TEST_CASE("bad torchvision state_dicts: io::load_weights and a PSPNet backbone", "[robustness]") {
  const Workspace& ws = workspace();
  TempDir dir;
  const std::string bad = dir / "resnet18_bad.pth";
  const std::string small = dir / "small.pth";
  const std::string legacy = dir / "legacy.pth";
  const std::string list = dir / "list.pth";
  const std::string script = dir / "scripted.pt";
  // resnet18 with one key deleted and one tensor reshaped (same number of elements).
  const auto py = test::run_python(dir, R"(
import torch, torchvision
torch.manual_seed(0)
sd = torchvision.models.resnet18().state_dict()
del sd['layer1.0.conv1.weight']
sd['conv1.weight'] = sd['conv1.weight'].reshape(32, 6, 7, 7)
torch.save(sd, ')" + bad + R"(')
small = {'conv1.weight': torch.zeros(64, 3, 7, 7)}
torch.save(small, ')" + small + R"(')
torch.save(small, ')" + legacy + R"(', _use_new_zipfile_serialization=False)
torch.save([torch.zeros(3)], ')" + list + R"(')
torch.jit.save(torch.jit.script(torch.nn.Conv2d(3, 4, 1)), ')" + script + R"(')
print('ok')
)");
  INFO(py.output);
  REQUIRE(py.exit_code == 0);
  const std::string small_bytes = test::read_bytes(small);
  const std::string cut = write_text(dir / "small_cut.pth", small_bytes.substr(0, small_bytes.size() / 2));
  const std::string empty = write_text(dir / "empty.pth", "");

  struct Case {
    std::string path;
    std::vector<std::string> names;  // besides the path
  };
  const std::vector<Case> cases = {
      {bad,
       {"missing keys (1)", "layer1.0.conv1.weight", "wrong shapes (1)",
        "conv1.weight: file [32, 6, 7, 7] vs model [64, 3, 7, 7]"}},
      {cut, {"truncated or corrupt"}},
      {empty, {"empty file"}},
      {legacy, {"legacy (pre-1.6", "torch.save(torch.load(p), p)"}},
      {list, {"expected a dict of tensors"}},
      {script, {"TorchScript"}},
  };
  models::ResNet resnet(models::ResNetOptions(18));
  std::vector<at::Tensor> before;
  for (const auto& item : io::module_state_dict(*resnet)) before.push_back(item.value().clone());
  int count = 0;
  for (const auto& c : cases) {
    ++count;
    INFO("case " << c.path);
    std::vector<std::string> names = c.names;
    names.push_back(c.path);
    check_names(api_outcome(Expect::kIoError, [&] { io::load_weights(*resnet, c.path); }), names);
    const auto now = io::module_state_dict(*resnet);
    for (size_t i = 0; i < before.size(); ++i) CHECK(at::equal(now[i].value(), before[i]));
    // The CLI route: the file as a PSPNet's torchvision backbone.
    Json config = ws.train_only({});
    config["model"] = {{"name", "pspnet"}, {"backbone", "resnet18"}, {"backbone_weights", c.path}};
    const std::string file = write_config(dir / ("pspnet_" + std::to_string(count) + ".json"), config);
    const std::string out = dir / ("out_" + std::to_string(count));
    check_exit(run_cli("train " + quote(file) + " --out " + quote(out)), 1, names);
    CHECK(files_under(out).empty());
  }
  {  // API only: a sweep of 32 cut points of a small state dict.
    ++count;
    const std::string path = dir / "sweep.pth";
    for (size_t k = 1; k < 33; ++k) {
      const size_t size = small_bytes.size() * k / 33;
      INFO("cut at " << size << " of " << small_bytes.size() << " bytes");
      test::write_bytes(path, small_bytes.substr(0, size));
      check_names(api_outcome(Expect::kIoError, [&] { io::load_state_dict(path); }), {path});
    }
  }
  CHECK(count == 7);
}
