"""A garment source independent of Fashion-MNIST's silhouettes: parametric cuts of the ten classes
(`shapes`), things that are not garments drawn the same way (`objects`), and the pictures made of them
in families, some held out whole for validation (`render`)."""
