#pragma once
// Helpers the tasks' evaluations share (internal; defined in task.cpp).

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

namespace ostrov::train {
class DataParallel;
}

namespace ostrov::tasks::detail {

/// A metric for JSON: NaN (nothing to measure, e.g. a class never seen) becomes null.
nlohmann::json nan_to_null(double value);

/// Sums `rows` (float records of `row_size` values, the second of which numbers the image)
/// over the ranks of `dp`: afterwards every rank holds every rank's rows, images renumbered
/// after the images of the ranks before; `images` becomes the total image count. An
/// all-gather built from all-reduce (Gloo's only collective here).
void all_gather_rows(train::DataParallel& dp, std::vector<float>& rows, int64_t row_size,
                     int64_t& images);

/// Adds (sum over ranks) a running loss sum and its sample count.
void all_reduce_loss(train::DataParallel& dp, double& loss_sum, int64_t& loss_count);

}  // namespace ostrov::tasks::detail
