/*
 * A JPEG decode through libjpeg's own API, for the one setting the TurboJPEG API does not
 * expose: block smoothing.
 *
 * When a progressive JPEG is decoded without some of its scans (see src/progressive.rs),
 * libjpeg-turbo "smooths" every block: it estimates the missing low bits of the first nine AC
 * coefficients from the neighbouring DC values. That pass costs about 15 % of such a decode,
 * and against the decode of the whole file it makes the result no closer (tests/progressive.rs
 * measures both). So it is switched off; on a file whose coefficients are all present libjpeg
 * never smooths, so nothing else changes.
 *
 * Everything else is libjpeg-turbo's defaults, as TurboJPEG uses them: accurate integer IDCT,
 * fancy upsampling. The library is the one the `turbojpeg-sys` crate builds and links; its
 * headers come from there too (build.rs), so the struct layouts always match.
 */

#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "jpeglib.h"

/* Keep in step with src/libjpeg.rs. */
#define PP_JPEG_MESSAGE_LEN 200

enum pp_jpeg_status {
  PP_JPEG_OK = 0,
  /* Decoded, but libjpeg warned (corrupt data it skipped, a premature end): `message` holds
   * the first warning. */
  PP_JPEG_WARNED = 1,
  /* Not decoded: `message` says why. */
  PP_JPEG_FAILED = -1,
};

struct pp_error_mgr {
  struct jpeg_error_mgr pub;
  jmp_buf escape;
  char *message;
};

/* A fatal error: keep its text and leave the decode. */
static void pp_error_exit(j_common_ptr cinfo) {
  struct pp_error_mgr *err = (struct pp_error_mgr *)cinfo->err;
  (*cinfo->err->format_message)(cinfo, err->message);
  longjmp(err->escape, 1);
}

/* Warnings (level < 0) are counted and the first one kept, as libjpeg's default does;
 * trace messages are dropped. Nothing is printed. */
static void pp_emit_message(j_common_ptr cinfo, int msg_level) {
  struct pp_error_mgr *err = (struct pp_error_mgr *)cinfo->err;
  if (msg_level >= 0)
    return;
  if (err->pub.num_warnings == 0)
    (*cinfo->err->format_message)(cinfo, err->message);
  err->pub.num_warnings++;
}

/*
 * Decodes `data` scaled by 1/`scale_denom` into `out`: `height` rows of `width` pixels,
 * `pitch` bytes apart, with `components` samples each (1 gray, 3 RGB, 4 CMYK). Fails, without
 * writing past `out`, when the decoded size is not the one given.
 */
int pp_jpeg_decode_unsmoothed(const unsigned char *data, unsigned long size,
                              unsigned int scale_denom, int components, unsigned char *out,
                              size_t pitch, unsigned int width, unsigned int height,
                              char message[PP_JPEG_MESSAGE_LEN]) {
  struct jpeg_decompress_struct cinfo;
  struct pp_error_mgr err;
  int status;

  message[0] = '\0';
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = pp_error_exit;
  err.pub.emit_message = pp_emit_message;
  err.message = message;
  if (setjmp(err.escape)) {
    jpeg_destroy_decompress(&cinfo);
    return PP_JPEG_FAILED;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, size);
  jpeg_read_header(&cinfo, TRUE);

  switch (components) {
  case 1: cinfo.out_color_space = JCS_GRAYSCALE; break;
  case 3: cinfo.out_color_space = JCS_RGB; break;
  case 4: cinfo.out_color_space = JCS_CMYK; break;
  default:
    snprintf(message, PP_JPEG_MESSAGE_LEN, "unsupported number of components: %d", components);
    jpeg_destroy_decompress(&cinfo);
    return PP_JPEG_FAILED;
  }
  cinfo.scale_num = 1;
  cinfo.scale_denom = scale_denom;
  cinfo.do_block_smoothing = FALSE;
  jpeg_start_decompress(&cinfo);

  if (cinfo.output_width != width || cinfo.output_height != height ||
      cinfo.output_components != components) {
    snprintf(message, PP_JPEG_MESSAGE_LEN,
             "decoded size %ux%u with %d components, expected %ux%u with %d",
             cinfo.output_width, cinfo.output_height, cinfo.output_components, width, height,
             components);
    jpeg_destroy_decompress(&cinfo);
    return PP_JPEG_FAILED;
  }

  while (cinfo.output_scanline < cinfo.output_height) {
    /* libjpeg returns at most rec_outbuf_height rows (1 to 4) per call. */
    JSAMPROW rows[4];
    JDIMENSION wanted = cinfo.output_height - cinfo.output_scanline;
    JDIMENSION i;
    if (wanted > 4)
      wanted = 4;
    for (i = 0; i < wanted; i++)
      rows[i] = out + (size_t)(cinfo.output_scanline + i) * pitch;
    jpeg_read_scanlines(&cinfo, rows, wanted);
  }
  jpeg_finish_decompress(&cinfo);

  status = err.pub.num_warnings > 0 ? PP_JPEG_WARNED : PP_JPEG_OK;
  jpeg_destroy_decompress(&cinfo);
  return status;
}
