#pragma once
// Instance-segmentation metrics: COCO-style mask AP, and the CVPPP leaf-segmentation
// challenge's Symmetric Best Dice (SBD) and |Difference in Count| (|DiC|) (Scharr et al.,
// "Leaf segmentation in plant phenotyping: a collation study", MVA 2016).
//
// CVPPP definitions, for label images L^a, L^b (0 = background, every other value one object):
//   Dice(A, B)    = 2 |A ∩ B| / (|A| + |B|)
//   BD(L^a, L^b)  = 1/M sum_{i=1..M} max_{j=1..N} Dice(L^a_i, L^b_j)   (M objects in L^a, N in L^b)
//   SBD           = min( BD(L^pred, L^gt), BD(L^gt, L^pred) )
//   DiC           = #objects(L^pred) - #objects(L^gt);  |DiC| its absolute value
// Dataset values are the means over images. Labels need not be consecutive. As in the
// challenge's evaluation code, BD of an image without objects in L^a is 0 (so SBD is 0 when
// either image is empty, including both).

#include <cstdint>

#include <ATen/core/Tensor.h>

#include "ostrov/metrics/detection_ap.h"

namespace ostrov::metrics {

/// COCO-style AP on masks (pycocotools' iouType "segm"): a DetectionAP whose update() reads
/// Detections::masks [D,H,W] and GroundTruth::masks [G,H,W] (see detection_ap.h for the
/// conventions; mask IoU = |A ∩ B| / |A ∪ B|, crowd: |A ∩ B| / |A|).
class MaskAP : public DetectionAP {
 public:
  /// At most `max_detections` (> 0, else c10::Error) detections per image and class.
  explicit MaskAP(int64_t max_detections = 100)
      : DetectionAP(DetectionAPOptions().iou_type(IouType::kMask).max_detections(max_detections)) {}
};

/// BD(a, b) of two [H,W] integer label images of the same shape.
double best_dice(const at::Tensor& a, const at::Tensor& b);

/// SBD(prediction, target) of two [H,W] integer label images of the same shape.
double symmetric_best_dice(const at::Tensor& prediction, const at::Tensor& target);

/// DiC = #objects(prediction) - #objects(target) of two [H,W] integer label images.
int64_t difference_in_count(const at::Tensor& prediction, const at::Tensor& target);

/// Streaming CVPPP scores: update() with [H,W] or [N,H,W] label images, then the means.
class CvpppMetrics {
 public:
  /// Integer label images of the same shape; c10::Error names both shapes otherwise.
  void update(const at::Tensor& prediction, const at::Tensor& target);
  /// Adds another accumulator's images (data-parallel evaluation: sum over ranks).
  void merge(const CvpppMetrics& other);
  void reset();
  /// Images added so far (each [N,H,W] update counts N).
  int64_t num_images() const { return images_; }
  /// Mean SBD over images; NaN before any image.
  double sbd() const;
  /// Mean |DiC|; NaN before any image.
  double abs_dic() const;
  /// Mean DiC (signed: > 0 means over-segmentation); NaN before any image.
  double dic() const;

 private:
  int64_t images_ = 0;
  double sbd_sum_ = 0.0;
  double abs_dic_sum_ = 0.0;
  double dic_sum_ = 0.0;
};

}  // namespace ostrov::metrics
