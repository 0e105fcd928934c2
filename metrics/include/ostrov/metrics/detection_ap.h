#pragma once
// Detection (and instance-mask) average precision, streamed image by image:
//  - COCO-style AP@[.5:.95] (10 IoU thresholds .50:.05:.95), AP@.50 and AP@.75, 101-point
//    interpolated, at most 100 detections per image and class, crowd regions ignored —
//    following pycocotools' COCOeval (evaluateImg + accumulate) for the "all" area range;
//  - PASCAL VOC AP at IoU .5: the VOC2007 11-point metric and the VOC2010+ all-point (area
//    under the interpolated curve) metric, following the devkit's voc_eval.
//
//   ostrov::metrics::DetectionAP ap;
//   for (...) ap.update({boxes, scores, labels}, {gt_boxes, gt_labels, gt_crowd});
//   auto r = ap.compute();   // r.map, r.map50, r.voc07_map50, r.ap_per_class ...
//
// Conventions (the subtle ones):
//  * Boxes are continuous (x1, y1, x2, y2); area = (x2-x1)*(y2-y1) with no "+1" (as pycocotools
//    on xywh boxes and torchvision; the VOC devkit's +1 pixel convention is not used).
//  * Classes: every label that occurs; a class with no non-crowd ground truth over the whole
//    set is left out of the means (pycocotools' precision = -1). A class with ground truth and
//    no detection counts with AP 0. A mean with no class at all is NaN.
//  * COCO matching, per image, class and IoU threshold t: detections sorted by score
//    descending (stable: ties keep their input order), only the first max_detections kept;
//    each takes, among ground truths not yet matched (crowd ones may be matched again), the one
//    of highest IoU >= t (IoU equal to t matches; on equal IoU the later ground truth in
//    non-crowd-first order wins, as in pycocotools' loop), preferring any non-crowd match over
//    a crowd one. A detection matched to a crowd region is ignored (neither TP nor FP). For a
//    crowd ground truth the "IoU" is intersection / detection area.
//  * COCO accumulation: detections of all images pooled, stably sorted by score (images in
//    update order), precision made monotone from the right, then read at recall thresholds
//    r = i*0.01 (i = 0..100, numpy's linspace values) at the first detection whose recall >= r
//    (0 past the last recall reached); AP = mean over the 101 values, mAP = mean over classes
//    (and over the 10 thresholds for AP@[.5:.95]). Precision divides by tp+fp+2^-52.
//  * VOC: detections of all images pooled and stably sorted by score (the devkit's unstable
//    sort may order ties differently); each is compared with the ground truth of highest IoU in
//    its image (the first one on ties), matched or not: IoU > 0.5 (strictly) and that ground
//    truth unmatched -> TP, already matched -> FP (a duplicate), crowd ("difficult") -> ignored;
//    IoU <= 0.5 -> FP. No max_detections limit. 11-point: mean over t = i*0.1 (numpy's arange
//    values, so 3*0.1 = 0.30000000000000004 > 0.3) of the highest precision at recall >= t.
//    All-point: sum of recall steps times the monotone precision envelope.

#include <cstdint>
#include <limits>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

namespace ostrov::metrics {

/// What overlap the evaluator uses.
enum class IouType {
  kBox,   ///< boxes [K,4] (pycocotools' iouType "bbox")
  kMask,  ///< masks [K,H,W] (pycocotools' iouType "segm")
};

/// Options of DetectionAP.
struct DetectionAPOptions {
  /// Overlap of boxes (reads Detections::boxes, GroundTruth::boxes) or of masks (the masks).
  TORCH_ARG(IouType, iou_type) = IouType::kBox;
  /// Detections kept per image and class for the COCO metrics (pycocotools' maxDets[-1]).
  TORCH_ARG(int64_t, max_detections) = 100;
};

/// One image's detections. boxes [D,4] float (x1,y1,x2,y2) for IouType::kBox, masks [D,H,W]
/// (bool/uint8, or float thresholded at 0.5) for IouType::kMask, scores [D] float (finite),
/// labels [D] integer.
struct Detections {
  at::Tensor boxes;   ///< [D,4] (x1,y1,x2,y2); read for IouType::kBox only
  at::Tensor masks;   ///< [D,H,W]; read for IouType::kMask only
  at::Tensor scores;  ///< [D] floating point, no NaN
  at::Tensor labels;  ///< [D] integer class labels
};

/// One image's ground truth: boxes [G,4] or masks [G,H,W], labels [G], iscrowd: undefined
/// (none) or [G] bool/integer (non-zero = crowd region, ignored).
struct GroundTruth {
  at::Tensor boxes;    ///< [G,4] (x1,y1,x2,y2); read for IouType::kBox only
  at::Tensor masks;    ///< [G,H,W], the detections' H,W; read for IouType::kMask only
  at::Tensor labels;   ///< [G] integer class labels
  at::Tensor iscrowd;  ///< [G] non-zero for crowd regions, or undefined (no crowd)
};

/// The metrics; NaN where no class has ground truth.
struct DetectionAPResult {
  /// Quiet NaN: the value of a metric that has no class to average over.
  static constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  double map = kNaN;          ///< COCO AP@[.5:.95]
  double map50 = kNaN;        ///< COCO AP@.50 (101-point)
  double map75 = kNaN;        ///< COCO AP@.75
  double voc07_map50 = kNaN;  ///< VOC2007 11-point AP@.5
  double voc_map50 = kNaN;    ///< VOC2010+ all-point AP@.5
  /// The evaluated classes (ascending), and each metric per class, in that order.
  std::vector<int64_t> classes;
  std::vector<double> ap_per_class;          ///< COCO AP@[.5:.95] of each class
  std::vector<double> ap50_per_class;        ///< COCO AP@.50 of each class
  std::vector<double> ap75_per_class;        ///< COCO AP@.75 of each class
  std::vector<double> voc07_ap50_per_class;  ///< VOC2007 11-point AP@.5 of each class
  std::vector<double> voc_ap50_per_class;    ///< VOC2010+ all-point AP@.5 of each class
};

/// Streaming evaluator: update() per image keeps only scores, labels and the overlap matrix.
class DetectionAP {
 public:
  /// An evaluator without images; c10::Error unless options.max_detections() is positive.
  explicit DetectionAP(DetectionAPOptions options = {});

  /// Adds one image. Errors (c10::Error) name the shapes on a mismatch and reject NaN
  /// scores or boxes.
  void update(const Detections& detections, const GroundTruth& ground_truth);
  /// Appends another evaluator's images (after this one's); options must agree.
  void merge(const DetectionAP& other);
  void reset();
  /// Images added so far (update() calls, plus merged images).
  int64_t num_images() const { return static_cast<int64_t>(images_.size()); }
  /// The options it was made with.
  const DetectionAPOptions& options() const { return options_; }

  /// The metrics over every image added (the conventions in the file comment); the state is
  /// kept, so more images may follow.
  DetectionAPResult compute() const;

  /// Per image: the overlaps of detections (input order) with ground truths.
  struct Image {
    std::vector<double> scores;      ///< [D] detection scores
    std::vector<int64_t> labels;     ///< [D] detection labels
    std::vector<int64_t> gt_labels;  ///< [G] ground-truth labels
    std::vector<uint8_t> gt_crowd;   ///< [G] 1 for a crowd region, else 0
    std::vector<double> intersection;  ///< [D*G] row-major
    std::vector<double> area;          ///< [D]
    std::vector<double> gt_area;       ///< [G]
  };

 private:
  DetectionAPOptions options_;
  std::vector<Image> images_;
};

}  // namespace ostrov::metrics
