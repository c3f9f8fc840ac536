# Where the corpora live; sourced by local/data.sh.
#
# AN4: the directory that contains an4/ (the extracted an4_sphere.tar.gz from
# http://www.speech.cs.cmu.edu/databases/an4/an4_sphere.tar.gz, about 64 MB), or an4/
# itself. Point it at your copy here or with `export AN4=...`. With the default,
# `local/data.sh --download true` downloads and extracts the corpus into ./downloads.
AN4=${AN4:-downloads}
