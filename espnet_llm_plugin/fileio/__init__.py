"""Reading and writing the files a recipe passes between stages."""
