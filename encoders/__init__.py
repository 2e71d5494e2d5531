"""Model components: a text encoder and knowledge fusion. No losses and no training loops live here."""
