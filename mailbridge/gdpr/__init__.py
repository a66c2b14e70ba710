"""Personal data (GDPR Art. 5, 15, 17): export, erasure, retention."""
