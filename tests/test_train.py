"""Training losses (hard labels, label smoothing, distillation) and the accuracy metric that reads labels packed beside
a teacher's outputs."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from pipeline.stages.train.training import HardLabelAccuracy, Teacher, hard_label_loss  # noqa: E402


def packed(labels: list[int], teacher: np.ndarray) -> tf.Tensor:
    return tf.constant(np.concatenate([np.array(labels, np.float32)[:, None], teacher], axis=1))


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def test_label_smoothing_spreads_that_share_of_each_label_over_every_class():
    probs = tf.constant([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    labels = tf.constant([[0.0], [2.0]])  # float column, as Keras and distillation pass them
    plain = hard_label_loss(0.0)(labels, probs).numpy()
    assert np.allclose(plain, -np.log([0.7, 0.8]), atol=1e-6)
    smoothed = hard_label_loss(0.3)(labels, probs).numpy()
    target = np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])  # 0.7 on the label + 0.3 / 3 everywhere
    assert np.allclose(smoothed, -(target * np.log(probs.numpy())).sum(axis=1), atol=1e-6)
    assert smoothed[0] > plain[0]  # a confident right answer is no longer free


def test_distillation_loss_mixes_label_and_teacher_terms():
    rng = np.random.default_rng(0)
    teacher, student = softmax(rng.normal(size=(8, 5)) * 3), softmax(rng.normal(size=(8, 5)) * 3)
    labels = list(rng.integers(0, 5, size=8))
    y_true, y_pred = packed(labels, teacher), tf.constant(student)
    hard = tf.keras.losses.sparse_categorical_crossentropy(labels, y_pred).numpy()

    only_labels = Teacher([], temperature=4.0, alpha=1.0).loss()(y_true, y_pred).numpy()
    np.testing.assert_allclose(only_labels, hard, rtol=1e-5)
    smoothed = Teacher([], temperature=4.0, alpha=1.0).loss(label_smoothing=0.1)(y_true, y_pred).numpy()
    np.testing.assert_allclose(smoothed, hard_label_loss(0.1)(y_true[:, :1], y_pred).numpy(), rtol=1e-5)
    assert not np.allclose(smoothed, hard)

    # A student that already matches the teacher owes the teacher nothing: only the label term is left.
    matched = Teacher([], temperature=4.0, alpha=0.5).loss()(y_true, tf.constant(teacher)).numpy()
    hard_matched = tf.keras.losses.sparse_categorical_crossentropy(labels, teacher).numpy()
    np.testing.assert_allclose(matched, 0.5 * hard_matched, rtol=1e-4, atol=1e-6)

    # Otherwise the teacher term is T² · KL(teacher_T || student_T), with both softened by T.
    t = 4.0
    soft_t, soft_s = softmax(np.log(teacher) / t), softmax(np.log(student) / t)
    kl = (soft_t * (np.log(soft_t) - np.log(soft_s))).sum(axis=1)
    only_teacher = Teacher([], temperature=t, alpha=0.0).loss()(y_true, y_pred).numpy()
    np.testing.assert_allclose(only_teacher, t * t * kl, rtol=1e-3)  # the loss adds 1e-8 inside its logs
    assert (only_teacher > 0).all()


def test_accuracy_reads_the_label_column_or_plain_labels():
    probs = tf.constant([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    metric = HardLabelAccuracy()
    metric.update_state(packed([0, 0, 0], np.full((3, 2), 0.5, np.float32)), probs)
    assert metric.result().numpy() == pytest.approx(2 / 3)
    plain = HardLabelAccuracy()
    plain.update_state(tf.constant([0, 1, 0]), probs)
    assert plain.result().numpy() == pytest.approx(1.0) and plain.name == "accuracy"


def test_several_teachers_teach_their_averaged_probabilities():
    from types import SimpleNamespace

    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 4, 3)).astype(np.float32)

    def model(seed: int) -> tf.keras.Model:
        tf.keras.utils.set_random_seed(seed)
        return tf.keras.Sequential(
            [tf.keras.Input((4, 3, 1)), tf.keras.layers.Flatten(), tf.keras.layers.Dense(5, "softmax")]
        )

    first, second = model(1), model(2)
    split = SimpleNamespace(x=x, y=np.array([0, 1, 2, 3, 4, 0]))
    train, val = Teacher([first, second], temperature=4.0, alpha=0.5).targets(SimpleNamespace(train=split, val=split))
    each = [m.predict(x[..., None], verbose=0) for m in (first, second)]
    assert not np.allclose(each[0], each[1])  # two different teachers ...
    np.testing.assert_allclose(train[:, 1:], (each[0] + each[1]) / 2, rtol=1e-6)  # ... teach their mean
    np.testing.assert_array_equal(train[:, 0], split.y)
    np.testing.assert_array_equal(val[:, 1:], np.eye(5)[split.y])  # validation keeps the hard label


def test_batchnorm_statistics_become_the_plain_average_over_the_data():
    from pipeline.stages.train.training import recompute_batchnorm

    inputs = tf.keras.Input(shape=(3,))
    model = tf.keras.Model(inputs, tf.keras.layers.BatchNormalization(momentum=0.99)(inputs))
    norm = model.layers[-1]
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(400, 3)) * [1.0, 2.0, 3.0] + [5.0, -1.0, 0.5]).astype(np.float32)
    norm.moving_mean.assign([100.0, 100.0, 100.0])  # the raw weights' stale statistics
    recompute_batchnorm(model, x, batch_size=100)
    batches = x.reshape(4, 100, 3)
    np.testing.assert_allclose(norm.moving_mean.numpy(), batches.mean(axis=1).mean(axis=0), rtol=1e-4)
    np.testing.assert_allclose(norm.moving_variance.numpy(), batches.var(axis=1).mean(axis=0), rtol=1e-3)
    assert norm.momentum == 0.99  # training goes on with the layer as it was


def test_weight_average_ends_on_the_average_and_refuses_early_stopping():
    from pipeline.stages.train import TrainConfig

    with pytest.raises(ValueError, match="set patience: 0 to use weight_average"):
        TrainConfig(weight_average=0.999, patience=4)
    assert TrainConfig(weight_average=0.999, patience=0).weight_average == 0.999


def test_consistent_teachers_score_each_augmented_batch_the_student_sees():
    from types import SimpleNamespace

    from pipeline.stages.train import AugmentConfig
    from pipeline.stages.train.augment import training_dataset

    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 12, 4)).astype(np.float32)
    tf.keras.utils.set_random_seed(5)
    model = tf.keras.Sequential(
        [tf.keras.Input((12, 4, 1)), tf.keras.layers.Flatten(), tf.keras.layers.Dense(3, "softmax")]
    )
    split = SimpleNamespace(x=x, y=np.array([0, 1, 2, 0, 1, 2, 0, 1]))
    teacher = Teacher([model, model], temperature=4.0, alpha=0.5, consistent=True)
    train, _ = teacher.targets(SimpleNamespace(train=split, val=split))
    assert train.shape == (8, 1)  # the label alone: the probabilities come per batch
    cfg = AugmentConfig(time_shift_frames=3, time_masks=1, time_mask_frames=4, coefficient_masks=1,
                        coefficient_mask_width=1)  # fmt: skip
    batches = list(training_dataset(x, train, 4, cfg, seed=7, relabel=teacher.relabel))
    clean = model.predict(x[..., None], verbose=0)
    for bx, by in batches:
        np.testing.assert_allclose(by[:, 1:], model.predict(bx, verbose=0), rtol=1e-5, atol=1e-6)  # what it sees
    labels = np.concatenate([by[:, 0] for _, by in batches])
    np.testing.assert_array_equal(np.sort(labels), np.sort(split.y))  # every label rides along in column 0, once
    seen = np.concatenate([by[:, 1:] for _, by in batches])
    assert not np.allclose(np.sort(seen, axis=0), np.sort(clean, axis=0), atol=1e-4)  # not the clean clips' answer


def test_consistent_teaching_needs_augmentation():
    from pipeline.stages.finetune import FinetuneConfig

    cfg = FinetuneConfig(distill={"teacher": "train", "consistent": True})
    assert cfg.check_recipe(None) == (("distill", "consistent"), "consistent teaching scores the augmented batches: "
                                      "set `augment` too")  # fmt: skip
