# Where corpora live. The synthetic corpus is generated, so this is where its audio goes.
SYNTHETIC=${SYNTHETIC:-downloads/synthetic}
# A handful of real recordings with transcripts (utt-id -> audio/<utt-id>.*); the project keeps
# them beside the repository. local/real_speech.sh reads them from here.
REAL_SPEECH=${REAL_SPEECH:-../../../../shared/data/real_speech}
