"""scikit-learn's own estimator checks, run once over every public estimator."""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

import skssl
from skssl.backbones import VisionTransformer
from skssl.baselines import RandomInit

# Tiny settings: the checks fit dozens of times on small random 2-D data.
TINY = dict(max_epochs=2, batch_size=16)
SMALL_HEADS = {
    "JigsawSSL": dict(n_permutations=4),
    "DeepClusterSSL": dict(n_clusters=4, pca_dim=4),
    "GANSSL": dict(latent_dim=8, generator_width=4),
    "InstanceDiscriminationSSL": dict(loss="nce", projection_dim=8, n_negatives=16),  # NCE covers more code than softmax
    "PIRL": dict(loss="nce", projection_dim=8, n_negatives=16, n_permutations=4),
    "MoCo": dict(projection_dim=8, queue_size=32),
    "BYOL": dict(projection_dim=8, hidden_dim=16),
    "SimSiam": dict(projection_dim=8, predictor_hidden_dim=4),
    "BarlowTwins": dict(projection_dim=8),
    "VICReg": dict(projection_dim=8),
    "SwAV": dict(n_prototypes=8, projection_dim=8, hidden_dim=16, n_local_crops=2),
    "DINO": dict(out_dim=16, hidden_dim=16, bottleneck_dim=8, n_local_crops=2),
    "BEiT": dict(backbone=VisionTransformer(patch_size=2, embed_dim=16, depth=1, num_heads=2), n_tokens=8, tokenizer_epochs=1),
    "MAE": dict(backbone=VisionTransformer(patch_size=2, embed_dim=16, depth=1, num_heads=2), decoder_dim=16,
                decoder_depth=1, decoder_heads=2),
    # Video: 2-D rows read as the few frames each method needs (video_shape=None).
    "FrameOrderSSL": dict(n_frames=4),
    "TemporalContrastiveSSL": dict(max_offset=1, projection_dim=8),
    "TemporalClassificationSSL": dict(n_segments=2, n_frames=1),
    "PredictiveCodingSSL": dict(n_frames=3, n_predict=1, latent_dim=8),
}
ESTIMATORS = [cls(**TINY, **SMALL_HEADS.get(cls.__name__, {})) for cls in skssl.ESTIMATORS]
ESTIMATORS += [
    RandomInit(),
    skssl.SimCLR(crop="contrastive", crop_update_every=1, crop_warmup=0, **TINY),
    # CACTUs episodes from the first epoch: the k-means path and its sampler go through the checks too.
    skssl.UnsupervisedMetaSSL(pseudo_labels="clusters", n_clusters=4, pca_dim=4, cluster_warmup=0, **TINY),
]

GRAY = "its 1- and 4-feature data are square counts, read as one-channel images, which colorization refuses by design"
# MAE and BEiT run here with a tiny ViT passed as a module (the named ViTs are slow
# on CPU); the check hashes a deep copy of each parameter, and joblib.hash of a
# torch tensor changes under copy.deepcopy, so a module parameter always "changes".
MODULE_PARAM = "joblib.hash of a torch module parameter differs from that of its deep copy, so the check cannot compare it"
EXPECTED_FAILURES = {
    "BEiT": {"check_estimators_overwrite_params": MODULE_PARAM},
    "MAE": {"check_estimators_overwrite_params": MODULE_PARAM},
    "ColorizationSSL": {
        "check_fit2d_1feature": GRAY,
        "check_n_features_in_after_fitting": GRAY,
        "check_positive_only_tag_during_fit": GRAY,
    },
}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=lambda est: EXPECTED_FAILURES.get(type(est).__name__, {}))
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.mark.parametrize("cls", skssl.ESTIMATORS, ids=lambda c: c.__name__)
def test_every_public_estimator_is_exported_and_documented(cls):
    assert cls.__name__ in skssl.__all__
    doc = cls.__doc__
    assert "{common_parameters}" not in doc and "random_state" in doc and "Examples" in doc
    assert set(cls().get_params()) >= {"backbone", "max_epochs", "batch_size", "lr", "device", "random_state", "checkpoint_dir"}
