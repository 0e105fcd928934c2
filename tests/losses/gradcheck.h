#pragma once
// A small gradcheck for the loss tests (LibTorch has no C++ torch.autograd.gradcheck):
// compares autograd's gradient of a scalar function with central finite differences, in
// double precision, with torch.autograd.gradcheck's defaults (eps 1e-6, atol 1e-5, rtol 1e-3).

#include <functional>
#include <sstream>
#include <string>

#include <ATen/ATen.h>
#include <torch/autograd.h>

namespace ostrov::test {

struct GradcheckResult {
  bool ok = true;
  double max_error = 0.0;
  std::string report;  ///< first mismatches: index, analytical, numerical
};

/// f maps a double tensor shaped like `input` to a scalar. The input is cloned; only its
/// values are perturbed.
inline GradcheckResult gradcheck(const std::function<at::Tensor(const at::Tensor&)>& f,
                                 const at::Tensor& input, double eps = 1e-6, double atol = 1e-5,
                                 double rtol = 1e-3) {
  GradcheckResult result;
  auto x = input.detach().to(at::kDouble).clone().requires_grad_(true);
  auto y = f(x);
  auto analytical = torch::autograd::grad({y}, {x}, {}, /*retain_graph=*/false,
                                          /*create_graph=*/false, /*allow_unused=*/true)[0];
  if (!analytical.defined()) analytical = at::zeros_like(x);
  at::NoGradGuard no_grad;
  auto flat = x.detach().clone();
  auto view = flat.view({-1});
  auto grad = analytical.reshape({-1});
  std::ostringstream report;
  int reported = 0;
  for (int64_t i = 0; i < view.numel(); ++i) {
    const double orig = view[i].item<double>();
    view[i] = orig + eps;
    const double plus = f(flat).item<double>();
    view[i] = orig - eps;
    const double minus = f(flat).item<double>();
    view[i] = orig;
    const double numerical = (plus - minus) / (2 * eps);
    const double a = grad[i].item<double>();
    const double err = std::abs(a - numerical);
    result.max_error = std::max(result.max_error, err);
    if (err > atol + rtol * std::abs(numerical)) {
      result.ok = false;
      if (reported++ < 5) {
        report << "index " << i << ": analytical " << a << " numerical " << numerical << "\n";
      }
    }
  }
  result.report = report.str();
  return result;
}

}  // namespace ostrov::test
