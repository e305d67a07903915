"""What a user sends, made into what the model sees: `preprocess` (decode with the header checked first, the
dataset's conversion, the artifact's normalisation) and `foreground` (a garment cut out of a busy photo)."""
