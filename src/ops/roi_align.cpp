#include "ostrov/ops/roi_align.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include "input_checks.h"
#include "ostrov/ops/generic.h"

namespace ostrov::ops {

namespace {

struct Pooling {
  int64_t pooled_h = 0;
  int64_t pooled_w = 0;
  double spatial_scale = 1.0;
  int64_t sampling_ratio = -1;
  bool aligned = false;
};

// Where one region's bins sit on the feature map and how densely they are sampled.
template <typename T>
struct RegionGrid {
  int64_t batch = 0;
  T start_h = 0, start_w = 0, bin_h = 0, bin_w = 0;
  int64_t grid_h = 0, grid_w = 0;  // sampling points per bin along y and x (<= 0: none)
  T count = 1;                     // the divisor of the average
};

// One bilinear sample: four pixel offsets inside a channel plane and their weights.
template <typename T>
struct Sample {
  int64_t pos[4];
  T w[4];
  bool inside;  // false: the point lies beyond the map's 1-pixel margin and contributes 0
};

// The arithmetic below follows torchvision's roi_align_kernel.cpp operation for operation
// (same types, same order), which is what makes the results bitwise equal.
template <typename T>
RegionGrid<T> region_grid(const T* roi, const Pooling& p) {
  RegionGrid<T> g;
  g.batch = static_cast<int64_t>(roi[0]);
  const T scale = static_cast<T>(p.spatial_scale);
  const T offset = p.aligned ? static_cast<T>(0.5) : static_cast<T>(0);
  const T start_w = roi[1] * scale - offset;
  const T start_h = roi[2] * scale - offset;
  const T end_w = roi[3] * scale - offset;
  const T end_h = roi[4] * scale - offset;
  T roi_w = end_w - start_w;
  T roi_h = end_h - start_h;
  if (!p.aligned) {  // legacy: malformed regions become at least 1x1
    roi_w = std::max(roi_w, static_cast<T>(1));
    roi_h = std::max(roi_h, static_cast<T>(1));
  }
  g.start_h = start_h;
  g.start_w = start_w;
  g.bin_h = roi_h / static_cast<T>(p.pooled_h);
  g.bin_w = roi_w / static_cast<T>(p.pooled_w);
  // ceil(roi / pooled) truncated to an integer, as torchvision's `int grid = ceil(...)`;
  // a NaN region gets no samples.
  const auto adaptive = [](T v) -> int64_t {
    const T c = std::ceil(v);
    return std::isnan(c) ? 0 : static_cast<int64_t>(c);
  };
  g.grid_h = p.sampling_ratio > 0 ? p.sampling_ratio : adaptive(roi_h / static_cast<T>(p.pooled_h));
  g.grid_w = p.sampling_ratio > 0 ? p.sampling_ratio : adaptive(roi_w / static_cast<T>(p.pooled_w));
  g.count = static_cast<T>(std::max<int64_t>(g.grid_h * g.grid_w, 1));
  return g;
}

template <typename T>
Sample<T> bilinear_sample(T y, T x, int64_t height, int64_t width) {
  Sample<T> s{};
  if (y < -1.0 || y > height || x < -1.0 || x > width || std::isnan(y) || std::isnan(x)) {
    s.inside = false;  // pos 0 and weights 0, as torchvision's pre-calculation
    return s;
  }
  s.inside = true;
  if (y <= 0) y = 0;
  if (x <= 0) x = 0;
  int64_t y_low = static_cast<int>(y);
  int64_t x_low = static_cast<int>(x);
  int64_t y_high, x_high;
  if (y_low >= height - 1) {
    y_high = y_low = height - 1;
    y = static_cast<T>(y_low);
  } else {
    y_high = y_low + 1;
  }
  if (x_low >= width - 1) {
    x_high = x_low = width - 1;
    x = static_cast<T>(x_low);
  } else {
    x_high = x_low + 1;
  }
  const T ly = y - y_low;
  const T lx = x - x_low;
  const T hy = 1. - ly;
  const T hx = 1. - lx;
  s.w[0] = hy * hx;
  s.w[1] = hy * lx;
  s.w[2] = ly * hx;
  s.w[3] = ly * lx;
  s.pos[0] = y_low * width + x_low;
  s.pos[1] = y_low * width + x_high;
  s.pos[2] = y_high * width + x_low;
  s.pos[3] = y_high * width + x_high;
  return s;
}

// All samples of one region, ordered (ph, pw, iy, ix) as the pooling loops visit them.
template <typename T>
void region_samples(const RegionGrid<T>& g, const Pooling& p, int64_t height, int64_t width,
                    std::vector<Sample<T>>& out) {
  out.clear();
  if (g.grid_h <= 0 || g.grid_w <= 0) return;
  out.reserve(static_cast<size_t>(p.pooled_h * p.pooled_w * g.grid_h * g.grid_w));
  for (int64_t ph = 0; ph < p.pooled_h; ++ph) {
    for (int64_t pw = 0; pw < p.pooled_w; ++pw) {
      for (int64_t iy = 0; iy < g.grid_h; ++iy) {
        const T y = g.start_h + static_cast<int>(ph) * g.bin_h +
                    static_cast<T>(static_cast<int>(iy) + .5f) * g.bin_h / static_cast<T>(g.grid_h);
        for (int64_t ix = 0; ix < g.grid_w; ++ix) {
          const T x = g.start_w + static_cast<int>(pw) * g.bin_w +
                      static_cast<T>(static_cast<int>(ix) + .5f) * g.bin_w /
                          static_cast<T>(g.grid_w);
          out.push_back(bilinear_sample<T>(y, x, height, width));
        }
      }
    }
  }
}

template <typename T>
void forward_kernel(const T* input, const T* rois, int64_t num_rois, int64_t channels,
                    int64_t height, int64_t width, const Pooling& p, T* output) {
  const int64_t bins = p.pooled_h * p.pooled_w;
  const int64_t plane = height * width;
  at::parallel_for(0, num_rois, 1, [&](int64_t begin, int64_t end) {
    std::vector<Sample<T>> samples;
    for (int64_t n = begin; n < end; ++n) {
      const auto g = region_grid<T>(rois + 5 * n, p);
      region_samples<T>(g, p, height, width, samples);
      const int64_t per_bin = samples.empty() ? 0 : g.grid_h * g.grid_w;
      for (int64_t c = 0; c < channels; ++c) {
        const T* in = input + (g.batch * channels + c) * plane;
        T* out = output + (n * channels + c) * bins;
        const Sample<T>* s = samples.data();
        for (int64_t bin = 0; bin < bins; ++bin) {
          T value = 0;
          for (int64_t k = 0; k < per_bin; ++k, ++s) {
            // Outside samples read pixel 0 with weight 0, as torchvision (NaN/inf propagate).
            value += s->w[0] * in[s->pos[0]] + s->w[1] * in[s->pos[1]] +
                     s->w[2] * in[s->pos[2]] + s->w[3] * in[s->pos[3]];
          }
          value /= g.count;
          out[bin] = value;
        }
      }
    }
  });
}

// Channels are split among threads; each thread visits every region in order, so each input
// pixel receives its contributions in torchvision's order (region, bin, sample) without atomics.
template <typename T>
void backward_kernel(const T* grad_output, const T* rois, int64_t num_rois, int64_t channels,
                     int64_t height, int64_t width, const Pooling& p, T* grad_input) {
  const int64_t bins = p.pooled_h * p.pooled_w;
  const int64_t plane = height * width;
  at::parallel_for(0, channels, 1, [&](int64_t c_begin, int64_t c_end) {
    std::vector<Sample<T>> samples;
    for (int64_t n = 0; n < num_rois; ++n) {
      const auto g = region_grid<T>(rois + 5 * n, p);
      region_samples<T>(g, p, height, width, samples);
      if (samples.empty()) continue;
      const int64_t per_bin = g.grid_h * g.grid_w;
      const T count = static_cast<T>(per_bin);
      for (int64_t c = c_begin; c < c_end; ++c) {
        T* gin = grad_input + (g.batch * channels + c) * plane;
        const T* gout = grad_output + (n * channels + c) * bins;
        const Sample<T>* s = samples.data();
        for (int64_t bin = 0; bin < bins; ++bin) {
          const T go = gout[bin];
          for (int64_t k = 0; k < per_bin; ++k, ++s) {
            if (!s->inside) continue;
            gin[s->pos[0]] += go * s->w[0] / count;
            gin[s->pos[1]] += go * s->w[1] / count;
            gin[s->pos[2]] += go * s->w[2] / count;
            gin[s->pos[3]] += go * s->w[3] / count;
          }
        }
      }
    }
  });
}

template <typename T>
void check_batch_indices(const at::Tensor& rois, int64_t batch) {
  const T* r = rois.data_ptr<T>();
  for (int64_t k = 0; k < rois.size(0); ++k) {
    const T b = r[5 * k];
    TORCH_CHECK(b >= 0 && b < static_cast<T>(batch), "roi_align: rois[", k,
                "] has batch index ", b, ", expected one in [0, ", batch, ")");
  }
}

at::Tensor forward(const at::Tensor& input, const at::Tensor& rois, const Pooling& p) {
  const int64_t num_rois = rois.size(0);
  const int64_t channels = input.size(1);
  auto output = at::zeros({num_rois, channels, p.pooled_h, p.pooled_w}, input.options());
  if (output.numel() == 0) return output;
  const auto in = input.contiguous();
  const auto r = rois.contiguous();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "roi_align_forward", [&] {
    check_batch_indices<scalar_t>(r, input.size(0));
    forward_kernel<scalar_t>(in.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(), num_rois, channels,
                             input.size(2), input.size(3), p, output.data_ptr<scalar_t>());
  });
  return output;
}

at::Tensor backward(const at::Tensor& grad, const at::Tensor& rois, at::IntArrayRef input_sizes,
                    const Pooling& p) {
  auto grad_input = at::zeros(input_sizes, grad.options());
  if (grad.numel() == 0) return grad_input;
  const auto g = grad.contiguous();
  const auto r = rois.contiguous();
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "roi_align_backward", [&] {
    backward_kernel<scalar_t>(g.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(), rois.size(0),
                              input_sizes[1], input_sizes[2], input_sizes[3], p,
                              grad_input.data_ptr<scalar_t>());
  });
  return grad_input;
}

class RoIAlignFunction : public torch::autograd::Function<RoIAlignFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input,
                            const at::Tensor& rois, int64_t pooled_h, int64_t pooled_w,
                            double spatial_scale, int64_t sampling_ratio, bool aligned) {
    const Pooling p{pooled_h, pooled_w, spatial_scale, sampling_ratio, aligned};
    ctx->saved_data["pooled_h"] = pooled_h;
    ctx->saved_data["pooled_w"] = pooled_w;
    ctx->saved_data["spatial_scale"] = spatial_scale;
    ctx->saved_data["sampling_ratio"] = sampling_ratio;
    ctx->saved_data["aligned"] = aligned;
    ctx->saved_data["input_sizes"] = input.sizes().vec();
    ctx->save_for_backward({rois});
    return ostrov::ops::forward(input, rois, p);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const Pooling p{ctx->saved_data["pooled_h"].toInt(), ctx->saved_data["pooled_w"].toInt(),
                    ctx->saved_data["spatial_scale"].toDouble(),
                    ctx->saved_data["sampling_ratio"].toInt(), ctx->saved_data["aligned"].toBool()};
    const auto sizes = ctx->saved_data["input_sizes"].toIntVector();
    const auto rois = ctx->get_saved_variables()[0];
    auto grad_input = ostrov::ops::backward(grad_outputs[0], rois, sizes, p);
    return {grad_input, at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor roi_align(const at::Tensor& input, const at::Tensor& rois,
                     std::array<int64_t, 2> output_size, double spatial_scale,
                     int64_t sampling_ratio, bool aligned) {
  if (detail::reduced_precision(input) || detail::reduced_precision(rois)) {
    // In float32, the result back in the input's type (autograd differentiates the casts).
    return roi_align(input.to(at::kFloat), rois.to(at::kFloat), output_size, spatial_scale,
                     sampling_ratio, aligned)
        .to(input.scalar_type());
  }
  const Pooling p{output_size[0], output_size[1], spatial_scale, sampling_ratio, aligned};
  detail::check_roi_align_inputs(input, rois, p.pooled_h, p.pooled_w);
  // Other devices take the ATen-operations path, differentiated by autograd.
  if (!input.is_cpu()) {
    return generic::roi_align(input, rois, output_size, spatial_scale, sampling_ratio, aligned);
  }
  if (at::GradMode::is_enabled() && input.requires_grad()) {
    return RoIAlignFunction::apply(input, rois, p.pooled_h, p.pooled_w, spatial_scale,
                                   sampling_ratio, aligned);
  }
  return forward(input, rois, p);
}

at::Tensor boxes_to_rois(const std::vector<at::Tensor>& boxes) {
  TORCH_CHECK(!boxes.empty(), "boxes_to_rois: expected at least one [L,4] tensor, got none");
  std::vector<at::Tensor> rows;
  rows.reserve(boxes.size());
  for (size_t i = 0; i < boxes.size(); ++i) {
    const auto& b = boxes[i];
    TORCH_CHECK(b.defined() && b.dim() == 2 && b.size(1) == 4, "boxes_to_rois: boxes[", i,
                "] should be [L,4], got ", b.defined() ? b.sizes() : at::IntArrayRef{});
    rows.push_back(at::cat({at::full({b.size(0), 1}, static_cast<int64_t>(i), b.options()), b}, 1));
  }
  return at::cat(rows, 0);
}

at::Tensor roi_align(const at::Tensor& input, const std::vector<at::Tensor>& boxes,
                     std::array<int64_t, 2> output_size, double spatial_scale,
                     int64_t sampling_ratio, bool aligned) {
  return roi_align(input, boxes_to_rois(boxes), output_size, spatial_scale, sampling_ratio,
                   aligned);
}

}  // namespace ostrov::ops
