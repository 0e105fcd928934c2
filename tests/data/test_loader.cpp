#include "catch.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <set>
#include <thread>
#include <vector>

#include <ATen/ATen.h>

#include "data/synthetic_sample.h"
#include "ostrov/core/error.h"
#include "ostrov/data/dataset.h"
#include "ostrov/data/loader.h"
#include "ostrov/data/transforms.h"

using namespace ostrov;
using namespace ostrov::data;
using ostrov::test::rect_sample;

namespace {

// n synthetic rectangle scenes; sample i has image_id i and source "rect_i.png".
class RectDataset : public Dataset {
 public:
  explicit RectDataset(int64_t n, int64_t h = 24, int64_t w = 32, int64_t fail_at = -1,
                       int sleep_ms = 0)
      : n_(n), h_(h), w_(w), fail_at_(fail_at), sleep_ms_(sleep_ms) {}
  int64_t size() const override { return n_; }
  Sample get(int64_t index) const override {
    ++calls;
    if (sleep_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms_));
    if (index == fail_at_) {
      throw IoError("rect_" + std::to_string(index) + ".png: truncated PNG (no IEND chunk)");
    }
    return rect_sample(static_cast<uint64_t>(index), h_, w_, 3);
  }
  mutable std::atomic<int64_t> calls{0};

 private:
  int64_t n_, h_, w_, fail_at_;
  int sleep_ms_;
};

std::shared_ptr<const Transform> augment() {
  return std::make_shared<Compose>(std::vector<std::shared_ptr<const Transform>>{
      std::make_shared<PhotometricDistort>(), std::make_shared<Expand>(2.0),
      std::make_shared<SSDRandomCrop>(), std::make_shared<HorizontalFlip>(),
      std::make_shared<Resize>(20, 20)});
}

std::vector<Batch> epoch_batches(DataLoader& loader) {
  std::vector<Batch> out;
  for (Batch& b : loader) out.push_back(std::move(b));
  return out;
}

bool tensors_equal(const at::Tensor& a, const at::Tensor& b) {
  if (a.defined() != b.defined()) return false;
  return !a.defined() || (a.sizes() == b.sizes() && at::equal(a, b));
}

bool batches_equal(const std::vector<Batch>& a, const std::vector<Batch>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].image_ids != b[i].image_ids || a[i].sources != b[i].sources) return false;
    if (!tensors_equal(a[i].images, b[i].images) || !tensors_equal(a[i].masks, b[i].masks)) return false;
    if (a[i].boxes.size() != b[i].boxes.size() || a[i].labels.size() != b[i].labels.size() ||
        a[i].instances.size() != b[i].instances.size()) {
      return false;
    }
    for (size_t k = 0; k < a[i].boxes.size(); ++k) {
      if (!tensors_equal(a[i].boxes[k], b[i].boxes[k]) ||
          !tensors_equal(a[i].labels[k], b[i].labels[k]) ||
          !tensors_equal(a[i].instances[k], b[i].instances[k])) {
        return false;
      }
    }
  }
  return true;
}

std::vector<int64_t> ids(const std::vector<Batch>& batches) {
  std::vector<int64_t> out;
  for (const auto& b : batches) out.insert(out.end(), b.image_ids.begin(), b.image_ids.end());
  return out;
}

}  // namespace

TEST_CASE("collate stacks images and masks and keeps variable targets as lists",
          "[data][loader]") {
  std::vector<Sample> samples = {rect_sample(0, 10, 12, 2), rect_sample(1, 10, 12, 5)};
  const Batch b = collate(samples);
  CHECK(b.size() == 2);
  CHECK(b.images.sizes() == at::IntArrayRef({2, 3, 10, 12}));
  CHECK(b.masks.sizes() == at::IntArrayRef({2, 10, 12}));
  CHECK(at::equal(b.masks[1], samples[1].mask));
  REQUIRE(b.boxes.size() == 2);
  CHECK(b.boxes[0].size(0) == 2);
  CHECK(b.boxes[1].size(0) == 5);
  CHECK(b.labels[1].size(0) == 5);
  CHECK(b.instances[1].sizes() == at::IntArrayRef({5, 10, 12}));
  CHECK(b.image_ids == std::vector<int64_t>{0, 1});
  CHECK(b.sources == std::vector<std::string>{"rect_0.png", "rect_1.png"});

  // A sample without a mask: masks undefined; without boxes: an empty [0,4] entry.
  samples[1].mask = at::Tensor();
  samples[0].boxes = at::Tensor();
  const Batch c = collate(samples);
  CHECK_FALSE(c.masks.defined());
  CHECK(c.boxes[0].sizes() == at::IntArrayRef({0, 4}));
  // Segmentation-only samples: no target lists at all.
  Sample seg = rect_sample(2, 10, 12, 1);
  seg.boxes = seg.labels = seg.instances = at::Tensor();
  const Batch d = collate({seg, seg});
  CHECK(d.boxes.empty());
  CHECK(d.instances.empty());
  CHECK(d.masks.defined());

  // Different sizes: the error names both images.
  CHECK_THROWS_AS(collate({rect_sample(3, 10, 12, 1), rect_sample(4, 11, 12, 1)}), DataError);
  CHECK_THROWS_WITH(collate({rect_sample(3, 10, 12, 1), rect_sample(4, 11, 12, 1)}),
                    Catch::Contains("image_id 4 (rect_4.png)") &&
                        Catch::Contains("image_id 3 (rect_3.png)") &&
                        Catch::Contains("[3,11,12]"));
}

TEST_CASE("sample_order: shuffles per epoch and shards like DistributedSampler",
          "[data][loader]") {
  const auto plain = sample_order(7, false, 0, 0);
  CHECK(plain == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6});
  const auto e0 = sample_order(50, true, 3, 0);
  CHECK(e0 == sample_order(50, true, 3, 0));
  CHECK(e0 != sample_order(50, true, 3, 1));
  CHECK(e0 != sample_order(50, true, 4, 0));
  auto sorted = e0;
  std::sort(sorted.begin(), sorted.end());
  CHECK(sorted == sample_order(50, false, 0, 0));
  // torch: indices += indices[:padding]; rank r takes indices[r::world_size].
  CHECK(sample_order(5, false, 0, 0, 0, 2) == std::vector<int64_t>{0, 2, 4});
  CHECK(sample_order(5, false, 0, 0, 1, 2) == std::vector<int64_t>{1, 3, 0});
  CHECK(sample_order(2, false, 0, 0, 2, 4) == std::vector<int64_t>{0});
}

TEST_CASE("same seed gives the same batches, workers do not change them", "[data][loader]") {
  auto dataset = std::make_shared<RectDataset>(23);
  auto options = LoaderOptions(4).shuffle(true).seed(11).transform(augment());
  DataLoader serial(dataset, LoaderOptions(options).workers(0));
  DataLoader threaded(dataset, LoaderOptions(options).workers(2).prefetch(3));
  DataLoader threaded_again(dataset, LoaderOptions(options).workers(3).prefetch(1));
  const auto a = epoch_batches(serial);
  const auto b = epoch_batches(threaded);
  const auto c = epoch_batches(threaded_again);
  REQUIRE(a.size() == 6);  // ceil(23 / 4)
  CHECK(a.back().size() == 3);
  CHECK(a.front().images.sizes() == at::IntArrayRef({4, 3, 20, 20}));
  CHECK(batches_equal(a, b));
  CHECK(batches_equal(a, c));
  // The transform is random: the batches differ from a loader with another seed.
  DataLoader other(dataset, LoaderOptions(options).seed(12).workers(2));
  CHECK_FALSE(batches_equal(a, epoch_batches(other)));
  // Every index once per epoch.
  auto seen = ids(a);
  std::sort(seen.begin(), seen.end());
  std::vector<int64_t> all(23);
  for (int64_t i = 0; i < 23; ++i) all[i] = i;
  CHECK(seen == all);
}

TEST_CASE("pin_memory: pinned batches with CUDA, the same batches either way", "[data][loader]") {
  auto dataset = std::make_shared<RectDataset>(10);
  auto options = LoaderOptions(4).shuffle(true).seed(5).workers(2);
  DataLoader plain(dataset, options);
  DataLoader pinned(dataset, LoaderOptions(options).pin_memory(true));
  CHECK_FALSE(plain.pins_memory());
  // torch's rule: pinning needs CUDA; without it the option is off (with a warning).
  CHECK(pinned.pins_memory() == at::globalContext().hasCUDA());
  const auto a = epoch_batches(plain);
  const auto b = epoch_batches(pinned);
  CHECK(batches_equal(a, b));
  for (const auto& batch : b) {
    CHECK(batch.images.is_pinned() == pinned.pins_memory());
    for (const auto& boxes : batch.boxes) CHECK(boxes.is_pinned() == pinned.pins_memory());
  }
}

TEST_CASE("epochs reshuffle, set_epoch and reset repeat an epoch", "[data][loader]") {
  auto dataset = std::make_shared<RectDataset>(16);
  DataLoader loader(dataset, LoaderOptions(4).shuffle(true).seed(5).workers(2).transform(augment()));
  const auto first = epoch_batches(loader);
  CHECK(loader.epoch() == 0);
  const auto second = epoch_batches(loader);  // a new pass advances the epoch
  CHECK(loader.epoch() == 1);
  CHECK(ids(first) != ids(second));
  loader.set_epoch(0);
  CHECK(batches_equal(epoch_batches(loader), first));
  loader.set_epoch(1);
  CHECK(batches_equal(epoch_batches(loader), second));
  // next()/reset(): a partial pass restarted gives the same batches again.
  loader.set_epoch(0);
  auto b0 = loader.next();
  REQUIRE(b0);
  CHECK(b0->image_ids == first[0].image_ids);
  loader.reset();
  std::vector<Batch> again;
  while (auto b = loader.next()) again.push_back(std::move(*b));
  CHECK(batches_equal(again, first));
  CHECK_FALSE(loader.next());  // stays at the end
  // Without shuffle every epoch has the same order.
  DataLoader plain(dataset, LoaderOptions(5));
  CHECK(ids(epoch_batches(plain)) == ids(epoch_batches(plain)));
  CHECK(plain.num_batches() == 4);
}

TEST_CASE("drop_last drops the incomplete batch", "[data][loader]") {
  auto dataset = std::make_shared<RectDataset>(10);
  DataLoader loader(dataset, LoaderOptions(4).drop_last(true).workers(1));
  CHECK(loader.num_batches() == 2);
  const auto batches = epoch_batches(loader);
  REQUIRE(batches.size() == 2);
  CHECK(batches[1].size() == 4);
}

TEST_CASE("two ranks cover every index exactly once", "[data][loader]") {
  for (const int64_t n : {20, 21}) {
    auto dataset = std::make_shared<RectDataset>(n);
    std::vector<int64_t> all;
    for (int64_t rank = 0; rank < 2; ++rank) {
      DataLoader loader(dataset, LoaderOptions(3).shuffle(true).seed(8).rank(rank).world_size(2)
                                     .workers(rank));  // rank 0 serial, rank 1 threaded
      CHECK(loader.num_samples() == (n + 1) / 2);
      const auto got = ids(epoch_batches(loader));
      CHECK(static_cast<int64_t>(got.size()) == (n + 1) / 2);
      all.insert(all.end(), got.begin(), got.end());
    }
    std::sort(all.begin(), all.end());
    std::vector<int64_t> unique = all;
    unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
    CHECK(static_cast<int64_t>(unique.size()) == n);  // every index is seen
    CHECK(unique.front() == 0);
    CHECK(unique.back() == n - 1);
    // Divisible: no padding, each index exactly once; otherwise one padded repeat.
    CHECK(static_cast<int64_t>(all.size()) == (n % 2 == 0 ? n : n + 1));
  }
}

TEST_CASE("a worker's exception surfaces in the caller with the file name", "[data][loader]") {
  SECTION("dataset error, threaded") {
    auto dataset = std::make_shared<RectDataset>(12, 24, 32, /*fail_at=*/5);
    DataLoader loader(dataset, LoaderOptions(2).workers(2));
    auto run = [&] {
      for (Batch& b : loader) (void)b;
    };
    CHECK_THROWS_AS(run(), IoError);
    loader.reset();
    CHECK_THROWS_WITH(run(), Catch::Contains("sample 5") && Catch::Contains("rect_5.png"));
    // The failed pass is over; the batches before the error were delivered.
    loader.reset();
    CHECK(loader.next()->image_ids == std::vector<int64_t>{0, 1});
    CHECK(loader.next()->image_ids == std::vector<int64_t>{2, 3});
    CHECK_THROWS_AS(loader.next(), IoError);
    CHECK_FALSE(loader.next());
  }
  SECTION("transform error, serial and threaded") {
    // A transform failing on one sample: the loader adds the index and the sample's source.
    struct FailOn7 : Transform {
      Sample operator()(Sample s, std::mt19937_64&) const override {
        TORCH_CHECK(s.image_id != 7, "cannot transform this one");
        return s;
      }
      std::string name() const override { return "fail_on_7"; }
    };
    auto dataset = std::make_shared<RectDataset>(12);
    for (int64_t workers : {0, 2}) {
      DataLoader loader(dataset, LoaderOptions(3).workers(workers).transform(std::make_shared<FailOn7>()));
      CHECK_THROWS_WITH(epoch_batches(loader),
                        Catch::Contains("sample 7 (rect_7.png)") &&
                            Catch::Contains("cannot transform this one"));
    }
  }
  SECTION("collate error names the images") {
    struct OddWider : Transform {
      Sample operator()(Sample s, std::mt19937_64& rng) const override {
        return s.image_id % 2 ? PadToMultiple(40)(s, rng) : s;
      }
      std::string name() const override { return "odd_wider"; }
    };
    auto dataset = std::make_shared<RectDataset>(4);
    DataLoader loader(dataset, LoaderOptions(2).workers(2).transform(std::make_shared<OddWider>()));
    CHECK_THROWS_WITH(epoch_batches(loader), Catch::Contains("rect_1.png") &&
                                                 Catch::Contains("different sizes"));
  }
}

TEST_CASE("prefetch is bounded and overlaps the consumer", "[data][loader]") {
  auto dataset = std::make_shared<RectDataset>(40);
  DataLoader loader(dataset, LoaderOptions(2).workers(2).prefetch(3));
  // Nothing consumed yet: the workers load ahead, but at most 3 batches (6 samples).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (dataset->calls.load() < 6 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(dataset->calls.load() == 6);
  REQUIRE(loader.next());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(dataset->calls.load() == 8);
}

TEST_CASE("destroying a loader mid-epoch does not hang", "[data][loader]") {
  auto dataset = std::make_shared<RectDataset>(200, 24, 32, -1, /*sleep_ms=*/20);
  const auto start = std::chrono::steady_clock::now();
  {
    DataLoader loader(dataset, LoaderOptions(4).workers(3).prefetch(6));
    int n = 0;
    for (Batch& b : loader) {
      (void)b;
      if (++n == 2) break;  // leave early with workers busy and batches queued
    }
    CHECK(n == 2);
  }
  {
    DataLoader unused(dataset, LoaderOptions(4).workers(2));  // never iterated
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // 200 samples x 20 ms would take ~1.3 s on 3 workers; an early exit must take far less
  // (two batches plus at most one sample per worker in flight).
  CHECK(seconds < 0.8);
  CHECK(dataset->calls.load() < 60);
}

TEST_CASE("invalid loader options are ConfigErrors", "[data][loader]") {
  auto dataset = std::make_shared<RectDataset>(4);
  CHECK_THROWS_WITH(DataLoader(dataset, LoaderOptions(0)), Catch::Contains("batch_size"));
  CHECK_THROWS_AS(DataLoader(dataset, LoaderOptions(1).workers(-1)), ConfigError);
  CHECK_THROWS_AS(DataLoader(dataset, LoaderOptions(1).prefetch(0)), ConfigError);
  CHECK_THROWS_WITH(DataLoader(dataset, LoaderOptions(1).rank(2).world_size(2)),
                    Catch::Contains("rank 2"));
  CHECK_THROWS_AS(DataLoader(nullptr, LoaderOptions(1)), ConfigError);
  // An empty dataset gives an empty pass.
  DataLoader empty(std::make_shared<RectDataset>(0), LoaderOptions(2).workers(1));
  CHECK(empty.num_batches() == 0);
  CHECK(epoch_batches(empty).empty());
}
