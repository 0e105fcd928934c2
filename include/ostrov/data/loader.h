#pragma once
// A multi-threaded, deterministic data loader: sampling (shuffle, distributed sharding),
// per-sample transforms, collation into Batches, and worker threads that prefetch batches
// into a bounded queue while the caller runs the model step.
//
//   auto loader = ostrov::data::DataLoader(dataset, ostrov::data::LoaderOptions(16)
//                                                      .shuffle(true).workers(2).seed(7)
//                                                      .transform(transforms));
//   for (int64_t epoch = 0; epoch < epochs; ++epoch) {
//     loader.set_epoch(epoch);                  // optional, see below
//     for (ostrov::data::Batch& batch : loader) { ... batch.images [N,3,H,W] ... }
//   }
//   // or: loader.reset(); while (auto batch = loader.next()) { ... }
//
// Determinism: the sample order of a pass depends only on (seed, epoch, rank, world_size),
// and each sample's transform draws from a std::mt19937_64 seeded from (seed, epoch, index),
// so the batches are the same for any number of workers and any thread timing.
//
// Passes and epochs: `set_epoch(e)` prepares a fresh pass over epoch e (as torch's
// DistributedSampler.set_epoch) and starts prefetching it. `begin()` iterates the prepared
// pass when nothing of it has been consumed yet; otherwise it prepares a pass of the next
// epoch, so a plain `for (batch : loader)` loop also reshuffles every time (as iterating a
// torch DataLoader with shuffle=True does). `reset()` restarts the current epoch from its
// first batch. `next()` returns the next batch of the current pass, std::nullopt at its end.
//
// Distributed sampling (torch.utils.data.DistributedSampler semantics, drop_last = false):
// the (shuffled) index list is padded by repeating its first indices up to a multiple of
// world_size, then rank r takes positions r, r + world_size, ... Every rank thus gets
// ceil(N / world_size) samples; with N divisible by world_size each index is seen exactly once.
//
// Errors: an exception thrown by the dataset or a transform (on any thread) is rethrown by
// next() / the iterator when its batch is reached, with the same ostrov error type (IoError,
// DataError, ConfigError; other exceptions become DataError) and a message that starts with
// "DataLoader: sample <index> (<source file>): " (the file only once get() has returned it; a
// collate error names "batch <b> of epoch <e>" instead). The pass then ends; the loader stays
// usable (reset(), set_epoch() or begin() start a new pass). The destructor stops and joins the
// workers even in the middle of a pass (a worker finishes the sample it is loading first).
//
// Thread safety: one consumer thread calls next()/begin()/reset()/set_epoch(); the dataset's
// get() and the transform are called from several worker threads at once.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <torch/arg.h>

#include "ostrov/data/dataset.h"
#include "ostrov/data/sample.h"
#include "ostrov/data/transforms.h"

namespace ostrov::data {

/// Options of DataLoader (chained setters, as torch::data::DataLoaderOptions).
struct LoaderOptions {
  /// Options with `batch_size` samples per batch, the other options at their defaults.
  explicit LoaderOptions(int64_t batch_size = 1) : batch_size_(batch_size) {}

  /// Samples per batch (>= 1).
  TORCH_ARG(int64_t, batch_size);
  /// Shuffle the sample order every epoch (deterministically from seed and epoch).
  TORCH_ARG(bool, shuffle) = false;
  /// Drop this rank's last batch when it has fewer than batch_size samples.
  TORCH_ARG(bool, drop_last) = false;
  /// Worker threads; 0 loads on the caller's thread inside next().
  TORCH_ARG(int64_t, workers) = 0;
  /// Bounded queue depth: at most this many batches are being loaded or waiting ahead of the
  /// consumer (>= 1; fewer than `workers` leaves workers idle). Ignored when workers = 0.
  TORCH_ARG(int64_t, prefetch) = 4;
  /// Seed of the sample order and of every per-sample transform engine.
  TORCH_ARG(uint64_t, seed) = 0;
  /// Applied to every sample after dataset.get (null = none). Must be safe to call from
  /// several threads (ostrov's transforms are).
  TORCH_ARG(std::shared_ptr<const Transform>, transform) = nullptr;
  /// This process's rank and the number of processes for distributed sharding.
  TORCH_ARG(int64_t, rank) = 0;
  /// Number of processes the samples are sharded over (>= 1; 1 = this process sees them all).
  TORCH_ARG(int64_t, world_size) = 1;
  /// Copy every batch into page-locked (pinned) host memory where it is loaded — in the
  /// workers — so its non-blocking copy to a CUDA device overlaps the step before (torch's
  /// DataLoader pin_memory). Needs a LibTorch with CUDA; elsewhere it is off with a warning,
  /// as in torch (DataLoader::pins_memory() says which).
  TORCH_ARG(bool, pin_memory) = false;
};

/// Stacks samples into a Batch: images [N,3,H,W]; masks [N,H,W] when every sample has one
/// (otherwise undefined); instances, boxes and labels as per-image lists when any sample has
/// them (a sample lacking one gets an empty [0,H,W] uint8 / [0,4] float / [0] int64 tensor),
/// empty lists when none does. Throws ostrov::DataError naming the image_ids and sources of
/// two samples whose image sizes differ.
Batch collate(const std::vector<Sample>& samples);

/// The per-sample transform engine's seed for (seed, epoch, index) (a SplitMix64 hash), so
/// users can reproduce one sample's augmentation outside the loader.
uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t index);

/// The indices rank `rank` visits in `epoch` (shuffle, padding and sharding as described
/// above), in order.
std::vector<int64_t> sample_order(int64_t dataset_size, bool shuffle, uint64_t seed, int64_t epoch,
                                  int64_t rank = 0, int64_t world_size = 1);

/// Loads a Dataset in batches: sample order, transforms, collation and prefetching worker
/// threads as described at the top of this header.
class DataLoader {
 public:
  /// Throws ostrov::ConfigError for invalid options (batch_size < 1, workers < 0,
  /// prefetch < 1, rank outside [0, world_size)) and for a null dataset.
  DataLoader(std::shared_ptr<const Dataset> dataset, LoaderOptions options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  /// Prepares a fresh pass over `epoch` and starts prefetching it (no-op when that pass is
  /// already prepared and untouched).
  void set_epoch(int64_t epoch);
  /// Epoch of the current pass.
  int64_t epoch() const { return epoch_; }
  /// Restarts the current epoch from its first batch (same order and augmentations).
  void reset();
  /// The next batch of the current pass, or std::nullopt when the pass is over. Rethrows a
  /// loading error (see above).
  std::optional<Batch> next();

  /// Batches per pass on this rank (len(loader) in PyTorch).
  int64_t num_batches() const;
  /// Samples per pass on this rank (after distributed padding, before drop_last).
  int64_t num_samples() const;
  /// Whether batches come in pinned host memory (options().pin_memory() and CUDA present).
  bool pins_memory() const { return pin_memory_; }
  /// The options given to the constructor.
  const LoaderOptions& options() const { return options_; }

  /// Input iterator over a pass: `for (Batch& b : loader)`. Exceptions come from begin()
  /// and operator++.
  class Iterator {
   public:
    using iterator_category = std::input_iterator_tag;  ///< single pass
    using value_type = Batch;                           ///< a collated batch
    using difference_type = std::ptrdiff_t;             ///< required by std::iterator_traits
    using pointer = Batch*;                             ///< operator->() result
    using reference = Batch&;                           ///< operator*() result
    Iterator() = default;
    /// The current batch (not to be called on an iterator at the end).
    Batch& operator*() { return *batch_; }
    /// The current batch (not to be called on an iterator at the end).
    Batch* operator->() { return &*batch_; }
    /// Loads the next batch of the pass (rethrows a loading error); at the end of the pass the
    /// iterator equals end().
    Iterator& operator++();
    bool operator==(const Iterator& other) const { return !batch_ && !other.batch_; }
    /// Iterators compare equal only when both are at the end of a pass.
    bool operator!=(const Iterator& other) const { return !(*this == other); }

   private:
    friend class DataLoader;
    explicit Iterator(DataLoader* loader);
    DataLoader* loader_ = nullptr;
    std::optional<Batch> batch_;
  };
  /// Starts a pass (see "Passes and epochs") and returns an iterator at its first batch.
  Iterator begin();
  /// The iterator a pass ends at.
  Iterator end() { return Iterator(); }

 private:
  struct Result;
  struct Plan;
  void start_pass();             // builds the plan of epoch_, clears queued results
  void stop_pass();              // makes workers drop the current pass
  void worker_loop();
  Result load_batch(const Plan& plan, int64_t batch) const;
  Batch take(Result&& result);   // returns the batch or rethrows its error

  std::shared_ptr<const Dataset> dataset_;
  LoaderOptions options_;
  bool pin_memory_ = false;
  int64_t epoch_ = 0;
  bool fresh_ = false;           // the current pass has delivered nothing yet

  std::mutex mutex_;
  std::condition_variable work_cv_;   // workers wait for work or stop
  std::condition_variable ready_cv_;  // the consumer waits for its next batch
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> generation_{0};  // bumped by every new pass; stale results are dropped
  std::shared_ptr<const Plan> plan_;
  int64_t next_assign_ = 0;           // next batch a worker will load
  int64_t next_deliver_ = 0;          // next batch next() returns
  std::map<int64_t, std::shared_ptr<Result>> ready_;
  std::vector<std::thread> threads_;
};

}  // namespace ostrov::data
