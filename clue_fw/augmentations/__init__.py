"""Views for contrastive pre-training (family ``augmentation``)."""
