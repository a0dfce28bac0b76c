//! Product images: safe fetch, compression and atomic storage. (Filled by the imaging issue.)
