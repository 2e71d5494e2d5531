"""Image–report and image–label corpora read from their published layouts (`corpora`), images decoded and
cached (`images`), and patient-level splits (`split`)."""
