#include "ostrov/metrics/detection_ap.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <numeric>

#include <ATen/ATen.h>

namespace ostrov::metrics {

namespace {

constexpr int kThresholds = 10;
constexpr int kRecallPoints = 101;

// numpy.linspace(.5, 0.95, 10): i*step + start, the last value set to stop.
std::array<double, kThresholds> iou_thresholds() {
  std::array<double, kThresholds> t{};
  const double step = (0.95 - 0.5) / 9.0;
  for (int i = 0; i < kThresholds; ++i) t[i] = static_cast<double>(i) * step + 0.5;
  t[kThresholds - 1] = 0.95;
  return t;
}

// numpy.linspace(0, 1, 101).
std::array<double, kRecallPoints> recall_thresholds() {
  std::array<double, kRecallPoints> r{};
  const double step = 1.0 / 100.0;
  for (int i = 0; i < kRecallPoints; ++i) r[i] = static_cast<double>(i) * step + 0.0;
  r[kRecallPoints - 1] = 1.0;
  return r;
}

std::vector<int64_t> to_int_vector(const at::Tensor& t) {
  auto c = t.to(at::kCPU, at::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

std::vector<double> to_double_vector(const at::Tensor& t) {
  auto c = t.to(at::kCPU, at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

void check_labels(const at::Tensor& labels, int64_t n, const char* what) {
  TORCH_CHECK(labels.defined() && labels.dim() == 1 && labels.size(0) == n, "DetectionAP::update: ",
              what, " labels should be [", n, "], got ",
              labels.defined() ? labels.sizes() : at::IntArrayRef{});
  TORCH_CHECK(!at::isFloatingType(labels.scalar_type()), "DetectionAP::update: ", what,
              " labels should be integers, got ", labels.scalar_type());
}

void check_boxes(const at::Tensor& boxes, const char* what) {
  TORCH_CHECK(boxes.defined() && boxes.dim() == 2 && boxes.size(1) == 4, "DetectionAP::update: ",
              what, " boxes should be [K,4], got ",
              boxes.defined() ? boxes.sizes() : at::IntArrayRef{});
  TORCH_CHECK(!boxes.isnan().any().item<bool>(), "DetectionAP::update: ", what,
              " boxes contain NaN");
}

at::Tensor binary_masks(const at::Tensor& masks, const char* what) {
  TORCH_CHECK(masks.defined() && masks.dim() == 3, "DetectionAP::update: ", what,
              " masks should be [K,H,W], got ", masks.defined() ? masks.sizes() : at::IntArrayRef{});
  if (at::isFloatingType(masks.scalar_type())) {
    TORCH_CHECK(!masks.isnan().any().item<bool>(), "DetectionAP::update: ", what,
                " masks contain NaN");
    return masks.gt(0.5);
  }
  return masks.ne(0);
}

// Box intersections [D,G] and areas, in double.
void box_overlaps(const at::Tensor& dt, const at::Tensor& gt, DetectionAP::Image& image) {
  auto a = dt.to(at::kCPU, at::kDouble);
  auto b = gt.to(at::kCPU, at::kDouble);
  auto area = [](const at::Tensor& x) {
    return ((x.select(1, 2) - x.select(1, 0)) * (x.select(1, 3) - x.select(1, 1)));
  };
  auto lt = at::maximum(a.slice(1, 0, 2).unsqueeze(1), b.slice(1, 0, 2).unsqueeze(0));
  auto rb = at::minimum(a.slice(1, 2, 4).unsqueeze(1), b.slice(1, 2, 4).unsqueeze(0));
  auto wh = (rb - lt).clamp_min(0);
  image.intersection = to_double_vector(wh.select(2, 0) * wh.select(2, 1));
  image.area = to_double_vector(area(a));
  image.gt_area = to_double_vector(area(b));
}

void mask_overlaps(const at::Tensor& dt, const at::Tensor& gt, DetectionAP::Image& image) {
  const int64_t pixels = dt.size(1) * dt.size(2);
  // float32 sums are exact below 2^24 pixels.
  const auto type = pixels < (int64_t{1} << 24) ? at::kFloat : at::kDouble;
  auto a = dt.reshape({dt.size(0), pixels}).to(type);
  auto b = gt.reshape({gt.size(0), pixels}).to(type);
  image.intersection = to_double_vector(at::mm(a, b.t()));
  image.area = to_double_vector(a.sum(1));
  image.gt_area = to_double_vector(b.sum(1));
}

double overlap(const DetectionAP::Image& im, size_t d, size_t g, bool crowd_as_ioa) {
  const size_t gts = im.gt_labels.size();
  const double inter = im.intersection[d * gts + g];
  if (inter <= 0) return 0.0;
  const double uni = (crowd_as_ioa && im.gt_crowd[g]) ? im.area[d] : im.area[d] + im.gt_area[g] - inter;
  return uni > 0 ? inter / uni : 0.0;
}

// One detection of a class pooled over images.
struct Pooled {
  double score;
  size_t image;
  size_t index;  // detection index in the image
};

// Stable sort by descending score; ties keep (image, input) order.
void sort_pooled(std::vector<Pooled>& v) {
  std::stable_sort(v.begin(), v.end(),
                   [](const Pooled& a, const Pooled& b) { return a.score > b.score; });
}

// pycocotools' evaluateImg + accumulate for one class -> AP per IoU threshold.
std::array<double, kThresholds> coco_ap(const std::vector<DetectionAP::Image>& images,
                                        int64_t label, int64_t max_detections, int64_t npig) {
  static const auto thresholds = iou_thresholds();
  static const auto recalls = recall_thresholds();
  struct Det {
    double score;
    std::array<uint8_t, kThresholds> matched{}, ignored{};
  };
  std::vector<Det> dets;  // in pooled (image, sorted-within-image) order
  for (size_t i = 0; i < images.size(); ++i) {
    const auto& im = images[i];
    std::vector<size_t> d_idx, g_idx;
    for (size_t d = 0; d < im.labels.size(); ++d) {
      if (im.labels[d] == label) d_idx.push_back(d);
    }
    for (size_t g = 0; g < im.gt_labels.size(); ++g) {
      if (im.gt_labels[g] == label && !im.gt_crowd[g]) g_idx.push_back(g);
    }
    for (size_t g = 0; g < im.gt_labels.size(); ++g) {  // crowd ("ignore") last
      if (im.gt_labels[g] == label && im.gt_crowd[g]) g_idx.push_back(g);
    }
    std::stable_sort(d_idx.begin(), d_idx.end(),
                     [&](size_t a, size_t b) { return im.scores[a] > im.scores[b]; });
    if (static_cast<int64_t>(d_idx.size()) > max_detections) d_idx.resize(max_detections);
    std::vector<std::array<uint8_t, kThresholds>> gt_matched(g_idx.size());
    for (size_t dd = 0; dd < d_idx.size(); ++dd) {
      Det det{im.scores[d_idx[dd]], {}, {}};
      for (int t = 0; t < kThresholds; ++t) {
        double best = std::min(thresholds[t], 1 - 1e-10);
        long m = -1;
        for (size_t gg = 0; gg < g_idx.size(); ++gg) {
          const bool crowd = im.gt_crowd[g_idx[gg]] != 0;
          if (gt_matched[gg][t] && !crowd) continue;
          if (m > -1 && !im.gt_crowd[g_idx[m]] && crowd) break;
          const double iou = overlap(im, d_idx[dd], g_idx[gg], true);
          if (iou < best) continue;
          best = iou;
          m = static_cast<long>(gg);
        }
        if (m == -1) continue;
        det.ignored[t] = im.gt_crowd[g_idx[m]] ? 1 : 0;
        det.matched[t] = 1;
        gt_matched[m][t] = 1;
      }
      dets.push_back(det);
    }
  }
  std::vector<size_t> order(dets.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return dets[a].score > dets[b].score; });
  std::array<double, kThresholds> ap{};
  const size_t nd = dets.size();
  const double spacing = std::nextafter(1.0, 2.0) - 1.0;  // np.spacing(1)
  for (int t = 0; t < kThresholds; ++t) {
    std::vector<double> rc(nd), pr(nd);
    double tp = 0, fp = 0;
    for (size_t k = 0; k < nd; ++k) {
      const auto& d = dets[order[k]];
      if (!d.ignored[t]) (d.matched[t] ? tp : fp) += 1;
      rc[k] = tp / static_cast<double>(npig);
      pr[k] = tp / (fp + tp + spacing);
    }
    for (size_t k = nd; k-- > 1;) pr[k - 1] = std::max(pr[k - 1], pr[k]);
    double sum = 0;
    for (double r : recalls) {
      const auto it = std::lower_bound(rc.begin(), rc.end(), r);  // searchsorted side="left"
      if (it != rc.end()) sum += pr[it - rc.begin()];
    }
    ap[t] = sum / kRecallPoints;
  }
  return ap;
}

// voc_eval at IoU 0.5 for one class -> {11-point AP, all-point AP}.
std::pair<double, double> voc_ap(const std::vector<DetectionAP::Image>& images, int64_t label,
                                 int64_t npos) {
  std::vector<Pooled> pooled;
  for (size_t i = 0; i < images.size(); ++i) {
    for (size_t d = 0; d < images[i].labels.size(); ++d) {
      if (images[i].labels[d] == label) pooled.push_back({images[i].scores[d], i, d});
    }
  }
  sort_pooled(pooled);
  std::vector<std::vector<uint8_t>> matched(images.size());
  for (size_t i = 0; i < images.size(); ++i) matched[i].assign(images[i].gt_labels.size(), 0);
  std::vector<double> rec, prec;
  double tp = 0, fp = 0;
  const double eps = std::numeric_limits<double>::epsilon();
  for (const auto& p : pooled) {
    const auto& im = images[p.image];
    double best = -std::numeric_limits<double>::infinity();
    long jmax = -1;
    for (size_t g = 0; g < im.gt_labels.size(); ++g) {
      if (im.gt_labels[g] != label) continue;
      const double iou = overlap(im, p.index, g, false);
      if (iou > best) {
        best = iou;
        jmax = static_cast<long>(g);
      }
    }
    if (best > 0.5) {
      if (im.gt_crowd[jmax]) continue;  // "difficult": neither TP nor FP
      if (!matched[p.image][jmax]) {
        tp += 1;
        matched[p.image][jmax] = 1;
      } else {
        fp += 1;
      }
    } else {
      fp += 1;
    }
    rec.push_back(tp / static_cast<double>(npos));
    prec.push_back(tp / std::max(tp + fp, eps));
  }
  // VOC2007 11-point.
  double ap07 = 0;
  for (int i = 0; i <= 10; ++i) {
    const double t = static_cast<double>(i) * 0.1;  // numpy.arange(0., 1.1, 0.1)
    double p = 0;
    for (size_t k = 0; k < rec.size(); ++k) {
      if (rec[k] >= t) p = std::max(p, prec[k]);
    }
    ap07 += p / 11.0;
  }
  // All-point: mrec = [0, rec, 1], mpre = [0, prec, 0], envelope, sum over recall changes.
  std::vector<double> mrec{0.0}, mpre{0.0};
  mrec.insert(mrec.end(), rec.begin(), rec.end());
  mpre.insert(mpre.end(), prec.begin(), prec.end());
  mrec.push_back(1.0);
  mpre.push_back(0.0);
  for (size_t k = mpre.size() - 1; k > 0; --k) mpre[k - 1] = std::max(mpre[k - 1], mpre[k]);
  double ap = 0;
  for (size_t k = 0; k + 1 < mrec.size(); ++k) {
    if (mrec[k + 1] != mrec[k]) ap += (mrec[k + 1] - mrec[k]) * mpre[k + 1];
  }
  return {ap07, ap};
}

double mean_of(const std::vector<double>& v) {
  if (v.empty()) return DetectionAPResult::kNaN;
  return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

}  // namespace

DetectionAP::DetectionAP(DetectionAPOptions options) : options_(options) {
  TORCH_CHECK(options_.max_detections() > 0, "DetectionAP: max_detections must be positive, got ",
              options_.max_detections());
}

void DetectionAP::reset() { images_.clear(); }

void DetectionAP::update(const Detections& dt, const GroundTruth& gt) {
  TORCH_CHECK(dt.scores.defined() && dt.scores.dim() == 1, "DetectionAP::update: scores should be [D], got ",
              dt.scores.defined() ? dt.scores.sizes() : at::IntArrayRef{});
  const int64_t d = dt.scores.size(0);
  TORCH_CHECK(at::isFloatingType(dt.scores.scalar_type()),
              "DetectionAP::update: scores should be floating point, got ", dt.scores.scalar_type());
  TORCH_CHECK(!dt.scores.isnan().any().item<bool>(), "DetectionAP::update: scores contain NaN");
  check_labels(dt.labels, d, "detection");
  const auto& gt_labels = gt.labels;
  TORCH_CHECK(gt_labels.defined() && gt_labels.dim() == 1,
              "DetectionAP::update: ground-truth labels should be [G], got ",
              gt_labels.defined() ? gt_labels.sizes() : at::IntArrayRef{});
  const int64_t g = gt_labels.size(0);
  check_labels(gt_labels, g, "ground-truth");
  Image image;
  image.scores = to_double_vector(dt.scores);
  image.labels = to_int_vector(dt.labels);
  image.gt_labels = to_int_vector(gt_labels);
  image.gt_crowd.assign(g, 0);
  if (gt.iscrowd.defined()) {
    TORCH_CHECK(gt.iscrowd.dim() == 1 && gt.iscrowd.size(0) == g,
                "DetectionAP::update: iscrowd should be [", g, "], got ", gt.iscrowd.sizes());
    const auto crowd = to_int_vector(gt.iscrowd.ne(0));
    for (int64_t k = 0; k < g; ++k) image.gt_crowd[k] = crowd[k] != 0;
  }
  if (options_.iou_type() == IouType::kBox) {
    check_boxes(dt.boxes, "detection");
    check_boxes(gt.boxes, "ground-truth");
    TORCH_CHECK(dt.boxes.size(0) == d && gt.boxes.size(0) == g, "DetectionAP::update: ",
                dt.boxes.sizes(), " detection boxes for ", d, " scores, ", gt.boxes.sizes(),
                " ground-truth boxes for ", g, " labels");
    box_overlaps(dt.boxes, gt.boxes, image);
  } else {
    auto a = binary_masks(dt.masks, "detection");
    auto b = binary_masks(gt.masks, "ground-truth");
    TORCH_CHECK(a.size(0) == d && b.size(0) == g, "DetectionAP::update: ", dt.masks.sizes(),
                " detection masks for ", d, " scores, ", gt.masks.sizes(),
                " ground-truth masks for ", g, " labels");
    TORCH_CHECK(a.sizes().slice(1) == b.sizes().slice(1), "DetectionAP::update: detection masks ",
                dt.masks.sizes(), " and ground-truth masks ", gt.masks.sizes(),
                " differ in H,W");
    mask_overlaps(a, b.to(a.device()), image);
  }
  images_.push_back(std::move(image));
}

void DetectionAP::merge(const DetectionAP& other) {
  TORCH_CHECK(other.options_.iou_type() == options_.iou_type() &&
                  other.options_.max_detections() == options_.max_detections(),
              "DetectionAP::merge: the evaluators' options differ");
  images_.insert(images_.end(), other.images_.begin(), other.images_.end());
}

DetectionAPResult DetectionAP::compute() const {
  std::map<int64_t, int64_t> positives;  // label -> non-crowd ground truths
  for (const auto& im : images_) {
    for (size_t k = 0; k < im.gt_labels.size(); ++k) {
      positives[im.gt_labels[k]] += im.gt_crowd[k] ? 0 : 1;
    }
  }
  DetectionAPResult r;
  std::vector<double> ap_all;  // per class, mean over thresholds
  for (const auto& [label, npos] : positives) {
    if (npos == 0) continue;
    const auto coco = coco_ap(images_, label, options_.max_detections(), npos);
    const auto [voc07, voc] = voc_ap(images_, label, npos);
    r.classes.push_back(label);
    r.ap_per_class.push_back(std::accumulate(coco.begin(), coco.end(), 0.0) / kThresholds);
    r.ap50_per_class.push_back(coco[0]);
    r.ap75_per_class.push_back(coco[5]);
    r.voc07_ap50_per_class.push_back(voc07);
    r.voc_ap50_per_class.push_back(voc);
  }
  r.map = mean_of(r.ap_per_class);
  r.map50 = mean_of(r.ap50_per_class);
  r.map75 = mean_of(r.ap75_per_class);
  r.voc07_map50 = mean_of(r.voc07_ap50_per_class);
  r.voc_map50 = mean_of(r.voc_ap50_per_class);
  return r;
}

}  // namespace ostrov::metrics
