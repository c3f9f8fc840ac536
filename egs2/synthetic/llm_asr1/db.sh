# Where corpora live. The synthetic corpus is generated, so this is where its audio goes.
SYNTHETIC=${SYNTHETIC:-downloads/synthetic}
