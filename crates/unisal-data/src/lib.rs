//! unisal-data: image decoding, validation, thumbnails and import into the pool.
