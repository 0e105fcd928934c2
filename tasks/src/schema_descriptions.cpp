// One line per config key, for `ostrov config --schema` (tasks/schema.h). The keys themselves
// come from the readers; tests/tasks/test_schema.cpp checks that this table describes exactly
// the keys they read, no more and no fewer.

#include <map>
#include <string>
#include <vector>

#include "ostrov/tasks/schema.h"

namespace ostrov::tasks {

namespace {

const std::map<std::string, std::string>& descriptions() {
  static const std::map<std::string, std::string> table = {
      // The sections.
      {"task", "the kind of problem: segmentation, detection, instance or classification"},
      {"data", "the dataset: its format, classes, folders or files, input size, augmentation"},
      {"model", "the network: model.name and its options"},
      {"loss", "the training objective (the task's default when left out)"},
      {"train", "the training loop, the optimizer and the learning-rate schedule"},
      // data
      {"data.format", "folder (images + masks), image_folder (a folder per class) or coco"},
      {"data.num_classes", "classes including the background (COCO: may be left out, counted)"},
      {"data.image_size", "[H, W] of the network input; images are resized to it"},
      {"data.transforms", "training augmentation: a list of {\"name\": ...} (docs/configs.md)"},
      {"data.skip_invalid", "COCO: skip malformed annotations instead of failing"},
      {"data.class_names", "one name per label, background first (training fills it in)"},
      {"data.category_ids", "the dataset's category id of each label (training fills it in)"},
      {"data.train", "the training split"},
      {"data.val", "the validation split (optional: without it no evaluation, no best.pt)"},
      {"data.train.root", "folder of the training split (relative to the config file)"},
      {"data.val.root", "folder of the validation split (relative to the config file)"},
      {"data.train.annotations", "COCO JSON file of the training split"},
      {"data.val.annotations", "COCO JSON file of the validation split"},
      {"data.train.images", "folder of the training split's images"},
      {"data.val.images", "folder of the validation split's images"},
      // model: every model
      {"model.name", "the network; the keys marked [model.name = ...] are its options"},
      {"model.weights", "a whole-model state_dict file (torchvision's or ostrov export's)"},
      {"model.backbone_weights", "a torchvision ImageNet classifier's state_dict for the encoder"},
      {"model.backbone", "the encoder: resnet18..resnet152, vgg16, alexnet, mobilenet_v2/v3_*"},
      {"model.backbone_channels", "a ResNet's stem and layer1 width (64: torchvision's)"},
      {"model.output_stride", "input size / feature size; 8 or 16 dilate the last stages"},
      {"model.in_channels", "channels of the input images"},
      {"model.input_padding", "reflect or zero: how an input is padded to the model's multiple"},
      {"model.dropout", "dropout probability (FCN: fc6/fc7; FC-DenseNet: every layer; else: head)"},
      {"model.image_size", "the square network input of a detector, in pixels"},
      // model: U-Net and the instance networks on it
      {"model.depth", "U-Net levels (down-samplings)"},
      {"model.base_width", "channels of U-Net's first level (doubled per level)"},
      {"model.batch_norm", "batch normalisation after each convolution"},
      {"model.upsampling", "transposed (learned) or bilinear up-sampling in the decoder"},
      {"model.padding", "same, valid (the paper's, output smaller) or mirror"},
      {"model.decoder_channels", "deeplabv3plus: the decoder's width"},
      // model: FCN over AlexNet, FC-DenseNet, PSPNet, DeepLab, LR-ASPP
      {"model.fc_channels", "width of fc6/fc7 as convolutions"},
      {"model.skip16_stage", "fcn16s, fcn8s: the AlexNet stage of the stride-16 skip (pool2)"},
      {"model.skip8_stage", "fcn8s: the AlexNet stage of the stride-8 skip (pool1)"},
      {"model.growth_rate", "channels each dense layer adds (by depth when left out)"},
      {"model.layers_per_block", "dense layers per block (by depth when left out)"},
      {"model.first_channels", "channels of the first convolution"},
      {"model.bins", "pyramid pooling grid sizes"},
      {"model.pooling", "avg or max pyramid pooling"},
      {"model.reduce_dimension", "1x1 convolutions to C/N channels per pyramid level"},
      {"model.head_channels", "channels of the head's hidden convolutions (PSPNet: its 3x3 one)"},
      {"model.aux", "the auxiliary head on layer3 (deep supervision)"},
      {"model.aux_channels", "channels of the auxiliary head"},
      {"model.aux_weight", "weight of the auxiliary head's loss"},
      {"model.atrous_rates", "ASPP dilation rates"},
      {"model.low_level_channels", "channels of the projected low-level features"},
      {"model.inter_channels", "channels of LR-ASPP's high-resolution branch"},
      // model: detectors
      {"model.num_extra", "extra feature maps after layer4 (each halves the map)"},
      {"model.reduced_tail", "halve the last MobileNetV3 stage (false with ImageNet weights)"},
      {"model.grid", "yolo: S, the grid is S x S cells"},
      {"model.boxes_per_cell", "yolo: B, boxes each cell predicts"},
      {"model.score_threshold", "post-processing: drop detections scoring lower"},
      {"model.nms_threshold", "post-processing: the per-class NMS IoU threshold"},
      {"model.topk_candidates", "post-processing: best boxes per class before NMS"},
      {"model.detections_per_image", "post-processing: detections kept per image"},
      // model: instance networks
      {"model.num_colors", "DeepColoring: the colours objects are told apart by"},
      {"model.min_size", "drop predicted objects smaller than this (pixels); faster_rcnn, mask_rcnn: the shorter image side after resizing"},
      {"model.max_size", "faster_rcnn, mask_rcnn: cap on the longer image side after resizing"},
      {"model.preset", "faster_rcnn, mask_rcnn: small (ResNet-18 FPN for a CPU) or torchvision (fasterrcnn_ / maskrcnn_resnet50_fpn)"},
      {"model.fpn_channels", "faster_rcnn, mask_rcnn: channels of every pyramid level"},
      {"model.trainable_layers", "faster_rcnn, mask_rcnn: ResNet stages left trainable, from layer4 down (5: all)"},
      {"model.frozen_batch_norm", "faster_rcnn, mask_rcnn: the body's BatchNorms stay in eval mode, frozen"},
      {"model.representation_size", "faster_rcnn, mask_rcnn: width of the box head's two layers"},
      {"model.rpn_batch_size_per_image", "faster_rcnn, mask_rcnn: anchors sampled per image for the RPN losses"},
      {"model.rpn_post_nms_top_n_train", "faster_rcnn, mask_rcnn: proposals per image in training"},
      {"model.rpn_post_nms_top_n_test", "faster_rcnn, mask_rcnn: proposals per image in evaluation"},
      {"model.batch_size_per_image", "faster_rcnn, mask_rcnn: proposals sampled per image for the box (and mask) losses"},
      {"model.num_levels", "Deep Watershed: energy levels"},
      {"model.level_step", "Deep Watershed: pixels of distance per energy level"},
      {"model.cut_level", "Deep Watershed: seeds are the pixels at this level or above"},
      {"model.direction_to_energy", "Deep Watershed: the energy head reads the direction field"},
      {"model.target", "unet_border: three_class (background, cell, border) or foreground"},
      {"model.border_width", "unet_border: border width of the target and of regrowing (px)"},
      {"model.feature_channels", "ssd_mask: channels of the features the RoIs are cut from"},
      {"model.roi_size", "ssd_mask: RoIAlign output size"},
      {"model.sampling_ratio", "ssd_mask: RoIAlign samples per bin side"},
      {"model.mask_channels", "ssd_mask, mask_rcnn: channels of the mask head"},
      {"model.mask_convs", "ssd_mask: 3x3 convolutions of the mask head"},
      {"model.mask_threshold", "ssd_mask, mask_rcnn: mask probability that counts as the object"},
      {"model.min_score", "ssd_mask: detections kept for AP"},
      {"model.count_score", "ssd_mask, mask_rcnn: detections counted as objects for SBD and |DiC|"},
      {"model.count_nms_threshold", "ssd_mask, mask_rcnn: class-agnostic NMS before counting objects"},
      {"model.zero_init_residual", "zero the last BN of each residual block (torchvision's)"},
      // loss
      {"loss.name", "the loss (one term)"},
      {"loss.terms", "a weighted sum instead: each term takes loss.name's keys and weight"},
      {"loss.terms[].name", "this term's loss"},
      {"loss.terms[].weight", "this term's weight in the sum"},
      {"loss.terms[].angular", "direction: compare angles instead of vectors"},
      {"loss.terms[].eps", "direction: added to norms"},
      {"loss.terms[].class_weights", "energy: a weight per level"},
      {"loss.terms[].ignore_index", "energy: the label that adds no loss"},
      {"loss.class_weights", "a weight per class (empty: all 1)"},
      {"loss.ignore_index", "the label that adds no loss"},
      {"loss.label_smoothing", "cross_entropy: the probability spread over the other classes"},
      {"loss.eps", "added to denominators (Dice) or norms (direction)"},
      {"loss.skip_absent", "Dice: leave out classes absent from target and prediction"},
      {"loss.ce_weight", "ce_dice: weight of the cross entropy"},
      {"loss.dice_weight", "ce_dice: weight of the Dice loss"},
      {"loss.alpha", "multibox: weight of the localisation loss"},
      {"loss.neg_pos_ratio", "multibox: hard negatives per positive"},
      {"loss.min_negatives", "multibox: hard negatives at least, per image"},
      {"loss.beta", "multibox: the smooth-L1 transition point"},
      {"loss.matcher", "multibox: threshold, hungarian (on the priors) or hungarian_predicted"},
      {"loss.location_weight", "hungarian(_predicted): weight of the box distance in the cost"},
      {"loss.confidence_weight", "hungarian_predicted: weight of the class probability"},
      {"loss.iou_threshold", "multibox: IoU that makes a default box positive"},
      {"loss.hungarian_threshold_positives",
       "hungarian: also make positive every box above iou_threshold"},
      {"loss.lambda_coord", "yolo: weight of the box terms"},
      {"loss.lambda_noobj", "yolo: weight of the confidence of predictors without an object"},
      {"loss.rescore", "yolo: the confidence target is the IoU (false: 1)"},
      {"loss.mask_weight", "ssd_mask: weight of the mask loss"},
      {"loss.loss_objectness_weight", "faster_rcnn, mask_rcnn: weight of the RPN's objectness loss"},
      {"loss.loss_rpn_box_reg_weight", "faster_rcnn, mask_rcnn: weight of the RPN's box loss"},
      {"loss.loss_classifier_weight", "faster_rcnn, mask_rcnn: weight of the box head's classification loss"},
      {"loss.loss_box_reg_weight", "faster_rcnn, mask_rcnn: weight of the box head's box loss"},
      {"loss.loss_mask_weight", "mask_rcnn: weight of the mask loss"},
      {"loss.box_jitter", "ssd_mask: training shift of box corners, a fraction of the box size"},
      {"loss.margin", "halo: the halo's width around each object (pixels)"},
      {"loss.mu", "halo: weight of the halo term in the choice of colour"},
      {"loss.weight_map", "weighted_cross_entropy: U-Net's w(x) from the instance masks"},
      {"loss.weight_map.w0", "weighted_cross_entropy: amplitude of the border term"},
      {"loss.weight_map.sigma", "weighted_cross_entropy: width of the border term (px)"},
      {"loss.weight_map.balance_classes",
       "weighted_cross_entropy: w_c balances background and object pixels per image"},
      // train
      {"train.epochs", "passes over the training data"},
      {"train.max_steps", "stop after this many steps (0: epochs decide)"},
      {"train.time_limit_s", "stop after this many seconds, the schedule annealed over them"},
      {"train.batch_size", "images per step and process"},
      {"train.workers", "data-loader threads (0: load on the training thread)"},
      {"train.seed", "seeds initialisation, shuffling and augmentation"},
      {"train.device", "cpu, cuda, cuda:N or auto"},
      {"train.precision", "fp32, bf16 (autocast; CPU and CUDA) or fp16 (autocast + loss scaling; CUDA)"},
      {"train.threads", "intra-op threads (0: the available cores per process)"},
      {"train.log_every", "log every N steps"},
      {"train.eval_every", "evaluate every N epochs (and at the end)"},
      {"train.checkpoint_every", "also write last.pt every N steps (0: at evaluations only)"},
      {"train.early_stopping", "stop after N evaluations without improvement (0: never)"},
      {"train.grad_clip", "clip the global gradient norm to this (0: off)"},
      {"train.distributed_timeout_s", "how long data-parallel ranks wait for each other"},
      {"train.distributed_backend", "auto (NCCL on CUDA where the build has it, else Gloo), gloo or nccl"},
      {"train.best_metric", "the evaluation metric that picks best.pt (the task's by default)"},
      {"train.optimizer", "sgd, adam or adamw"},
      {"train.lr", "learning rate (the schedule's peak)"},
      {"train.momentum", "SGD momentum"},
      {"train.nesterov", "SGD with Nesterov momentum"},
      {"train.weight_decay", "L2 penalty (decoupled for adamw)"},
      {"train.betas", "Adam's [beta1, beta2]"},
      {"train.eps", "Adam's epsilon"},
      {"train.schedule", "a schedule name, or an object with train.schedule.* keys"},
      {"train.schedule.name", "constant, step, multistep, cosine or poly"},
      {"train.schedule.step_size", "step: steps between decays"},
      {"train.schedule.milestones", "multistep: the steps at which the rate decays"},
      {"train.schedule.gamma", "step, multistep: the decay factor"},
      {"train.schedule.power", "poly: the exponent"},
      {"train.schedule.min_lr", "cosine, poly: the rate at the end"},
      {"train.schedule.warmup_steps", "linear warm-up steps (0: none)"},
      {"train.schedule.warmup_factor", "the warm-up's first rate as a fraction of train.lr"},
  };
  return table;
}

}  // namespace

const std::string& describe_key(const std::string& path) {
  static const std::string kNone;
  const auto it = descriptions().find(path);
  return it == descriptions().end() ? kNone : it->second;
}

std::vector<std::string> described_keys() {
  std::vector<std::string> keys;
  for (const auto& item : descriptions()) keys.push_back(item.first);
  return keys;
}

}  // namespace ostrov::tasks
