#include "ostrov/ops/boxes.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

namespace ostrov::ops {

namespace {

void check_last_dim_4(const at::Tensor& boxes, const char* name) {
  TORCH_CHECK(boxes.defined(), name, ": boxes is an undefined tensor");
  TORCH_CHECK(boxes.dim() >= 1 && boxes.size(-1) == 4, name, ": boxes should be [...,4], got ",
              boxes.sizes());
}

void check_n4(const at::Tensor& boxes, const char* name, const char* what = "boxes") {
  TORCH_CHECK(boxes.defined(), name, ": ", what, " is an undefined tensor");
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, name, ": ", what, " should be [N,4], got ",
              boxes.sizes());
}

// torchvision's _upcast: float32/float64 and int32/int64 stay, smaller types widen.
at::Tensor upcast(const at::Tensor& t) {
  if (t.is_floating_point()) {
    return (t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble) ? t : t.to(at::kFloat);
  }
  return (t.scalar_type() == at::kInt || t.scalar_type() == at::kLong) ? t : t.to(at::kInt);
}

// The four coordinates as [...] tensors (torchvision's boxes.unbind(-1)).
std::vector<at::Tensor> unbind_last(const at::Tensor& boxes) { return boxes.unbind(-1); }

template <typename T>
void box_iou_kernel(const T* a, int64_t n, const T* b, int64_t m, T* out) {
  std::vector<T> area_b(static_cast<size_t>(m));
  for (int64_t j = 0; j < m; ++j) {
    const T* q = b + 4 * j;
    area_b[j] = (q[2] - q[0]) * (q[3] - q[1]);
  }
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(m, 1));
  at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const T ax1 = a[4 * i], ay1 = a[4 * i + 1], ax2 = a[4 * i + 2], ay2 = a[4 * i + 3];
      const T area_a = (ax2 - ax1) * (ay2 - ay1);
      T* row = out + i * m;
      for (int64_t j = 0; j < m; ++j) {
        const T* q = b + 4 * j;
        // Same operation order as torchvision: max/min, subtract, clamp at 0 (keeping NaN
        // like Tensor.clamp), multiply, (area1 + area2) - inter, divide.
        T w = std::min(ax2, q[2]) - std::max(ax1, q[0]);
        T h = std::min(ay2, q[3]) - std::max(ay1, q[1]);
        w = w < T(0) ? T(0) : w;
        h = h < T(0) ? T(0) : h;
        const T inter = w * h;
        row[j] = inter / (area_a + area_b[j] - inter);
      }
    }
  });
}

// torchvision's _box_inter_union + division, for the dtypes the kernel does not take.
at::Tensor box_iou_aten(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  const auto area1 = box_area(boxes1);
  const auto area2 = box_area(boxes2);
  const auto b1 = boxes1.unsqueeze(1);
  const auto lt = at::max(b1.slice(2, 0, 2), boxes2.slice(1, 0, 2));
  const auto rb = at::min(b1.slice(2, 2, 4), boxes2.slice(1, 2, 4));
  const auto wh = upcast(rb - lt).clamp_min(0);
  const auto inter = wh.select(2, 0) * wh.select(2, 1);
  const auto uni = area1.unsqueeze(1) + area2 - inter;
  return inter / uni;
}

}  // namespace

at::Tensor box_xyxy_to_xywh(const at::Tensor& boxes) {
  check_last_dim_4(boxes, "box_xyxy_to_xywh");
  const auto c = unbind_last(boxes);
  return at::stack({c[0], c[1], c[2] - c[0], c[3] - c[1]}, -1);
}

at::Tensor box_xywh_to_xyxy(const at::Tensor& boxes) {
  check_last_dim_4(boxes, "box_xywh_to_xyxy");
  const auto c = unbind_last(boxes);
  return at::stack({c[0], c[1], c[0] + c[2], c[1] + c[3]}, -1);
}

at::Tensor box_xyxy_to_cxcywh(const at::Tensor& boxes) {
  check_last_dim_4(boxes, "box_xyxy_to_cxcywh");
  const auto c = unbind_last(boxes);
  // (x1 + x2) / 2 is a true division, so integer boxes give float centres, as in Python.
  return at::stack({(c[0] + c[2]) / 2, (c[1] + c[3]) / 2, c[2] - c[0], c[3] - c[1]}, -1);
}

at::Tensor box_cxcywh_to_xyxy(const at::Tensor& boxes) {
  check_last_dim_4(boxes, "box_cxcywh_to_xyxy");
  const auto c = unbind_last(boxes);
  const auto half_w = c[2] * 0.5;
  const auto half_h = c[3] * 0.5;
  return at::stack({c[0] - half_w, c[1] - half_h, c[0] + half_w, c[1] + half_h}, -1);
}

at::Tensor box_convert(const at::Tensor& boxes, const std::string& in_fmt,
                       const std::string& out_fmt) {
  const auto known = [](const std::string& f) {
    return f == "xyxy" || f == "xywh" || f == "cxcywh";
  };
  TORCH_CHECK(known(in_fmt) && known(out_fmt),
              "box_convert: formats should be \"xyxy\", \"xywh\" or \"cxcywh\", got in_fmt=\"",
              in_fmt, "\" out_fmt=\"", out_fmt, "\"");
  check_last_dim_4(boxes, "box_convert");
  if (in_fmt == out_fmt) return boxes.clone();
  // Through xyxy, as torchvision.
  at::Tensor xyxy = boxes;
  if (in_fmt == "xywh") xyxy = box_xywh_to_xyxy(boxes);
  if (in_fmt == "cxcywh") xyxy = box_cxcywh_to_xyxy(boxes);
  if (out_fmt == "xywh") return box_xyxy_to_xywh(xyxy);
  if (out_fmt == "cxcywh") return box_xyxy_to_cxcywh(xyxy);
  return xyxy;
}

at::Tensor box_area(const at::Tensor& boxes) {
  check_n4(boxes, "box_area");
  const auto b = upcast(boxes);
  return (b.select(1, 2) - b.select(1, 0)) * (b.select(1, 3) - b.select(1, 1));
}

at::Tensor clip_boxes_to_image(const at::Tensor& boxes, int64_t height, int64_t width) {
  check_last_dim_4(boxes, "clip_boxes_to_image");
  TORCH_CHECK(height >= 0 && width >= 0,
              "clip_boxes_to_image: height and width should be >= 0, got height=", height,
              " width=", width);
  const auto xs = boxes.slice(-1, 0, 4, 2).clamp(0, width);
  const auto ys = boxes.slice(-1, 1, 4, 2).clamp(0, height);
  return at::stack({xs, ys}, boxes.dim()).reshape(boxes.sizes());
}

at::Tensor remove_small_boxes(const at::Tensor& boxes, double min_size) {
  check_n4(boxes, "remove_small_boxes");
  const auto ws = boxes.select(1, 2) - boxes.select(1, 0);
  const auto hs = boxes.select(1, 3) - boxes.select(1, 1);
  return at::where(ws.ge(min_size).logical_and_(hs.ge(min_size)))[0];
}

at::Tensor box_iou(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  check_n4(boxes1, "box_iou", "boxes1");
  check_n4(boxes2, "box_iou", "boxes2");
  TORCH_CHECK(boxes1.device() == boxes2.device(), "box_iou: boxes1 is on ", boxes1.device(),
              " but boxes2 is on ", boxes2.device());
  // Mixed dtypes go through ATen too: torchvision computes each area in its own dtype.
  const auto type = boxes1.scalar_type();
  if (!boxes1.is_cpu() || boxes2.scalar_type() != type ||
      (type != at::kFloat && type != at::kDouble)) {
    return box_iou_aten(boxes1, boxes2);
  }
  const auto& a = boxes1;
  const auto& b = boxes2;

  const int64_t n = a.size(0);
  const int64_t m = b.size(0);
  auto out = at::empty({n, m}, a.options());
  if (n == 0 || m == 0) return out;
  const auto ac = a.contiguous();
  const auto bc = b.contiguous();
  AT_DISPATCH_FLOATING_TYPES(type, "box_iou", [&] {
    box_iou_kernel<scalar_t>(ac.data_ptr<scalar_t>(), n, bc.data_ptr<scalar_t>(), m,
                             out.data_ptr<scalar_t>());
  });
  return out;
}

}  // namespace ostrov::ops
