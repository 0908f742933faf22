"""The site's photo gallery: uploads checked by imgproxy's own rules, thumbnails made on save."""
