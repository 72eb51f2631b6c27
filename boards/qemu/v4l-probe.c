/*
 * v4l-probe: a small, dependency-free V4L2 capture check for board bring-up.
 *
 * Opens a V4L2 device, prints what the driver reports (VIDIOC_QUERYCAP,
 * inputs, VIDIOC_ENUM_FMT with frame sizes), sets a capture format
 * (default YUYV 640x480), captures N frames through an MMAP stream and
 * prints one line per frame (sequence, size, time, a luma mean and a
 * checksum, so that a frozen or empty stream is visible).
 *
 * Build (static, runs in a busybox initramfs or on any aarch64 board):
 *   aarch64-linux-gnu-gcc -static -O2 -Wall -Wextra -o v4l-probe v4l-probe.c
 *
 * Usage: v4l-probe [-d /dev/video0] [-n frames] [-W width] [-H height]
 *                  [-f FOURCC] [-r fps] [-j]
 *   -r   ask for this frame rate (VIDIOC_S_PARM); default: the driver's
 *   -j   print frame lines as JSON objects (one per line) instead of text
 *
 * Exit status: 0 when all requested frames were captured, 1 on any error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/videodev2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_BUFS 8

struct buffer {
	void *start;
	size_t length;
};

static int xioctl(int fd, unsigned long req, void *arg)
{
	int r;
	do {
		r = ioctl(fd, req, arg);
	} while (r == -1 && errno == EINTR);
	return r;
}

/* "YUYV"; big-endian variants (bit 31) as "XR15-BE"; trailing spaces dropped */
static void fourcc_str(uint32_t f, char out[8])
{
	int n = 4;
	out[0] = (char)(f & 0xff);
	out[1] = (char)((f >> 8) & 0xff);
	out[2] = (char)((f >> 16) & 0xff);
	out[3] = (char)((f >> 24) & 0x7f);
	while (n > 1 && out[n - 1] == ' ')
		n--;
	if (f & (1u << 31))
		memcpy(out + n, "-BE", 3), n += 3;
	out[n] = '\0';
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s [-d device] [-n frames] [-W width] [-H height] [-f FOURCC] [-r fps] [-j]\n",
		argv0);
}

static void print_caps(uint32_t c)
{
	static const struct {
		uint32_t bit;
		const char *name;
	} names[] = {
		{ V4L2_CAP_VIDEO_CAPTURE, "VIDEO_CAPTURE" },
		{ V4L2_CAP_VIDEO_CAPTURE_MPLANE, "VIDEO_CAPTURE_MPLANE" },
		{ V4L2_CAP_VIDEO_OUTPUT, "VIDEO_OUTPUT" },
		{ V4L2_CAP_VIDEO_OUTPUT_MPLANE, "VIDEO_OUTPUT_MPLANE" },
		{ V4L2_CAP_VIDEO_M2M, "VIDEO_M2M" },
		{ V4L2_CAP_VIDEO_OVERLAY, "VIDEO_OVERLAY" },
		{ V4L2_CAP_VBI_CAPTURE, "VBI_CAPTURE" },
		{ V4L2_CAP_SLICED_VBI_CAPTURE, "SLICED_VBI_CAPTURE" },
		{ V4L2_CAP_TUNER, "TUNER" },
		{ V4L2_CAP_AUDIO, "AUDIO" },
		{ V4L2_CAP_RADIO, "RADIO" },
		{ V4L2_CAP_SDR_CAPTURE, "SDR_CAPTURE" },
		{ V4L2_CAP_META_CAPTURE, "META_CAPTURE" },
		{ V4L2_CAP_READWRITE, "READWRITE" },
		{ V4L2_CAP_STREAMING, "STREAMING" },
		{ V4L2_CAP_TOUCH, "TOUCH" },
		{ V4L2_CAP_IO_MC, "IO_MC" },
	};
	size_t i;
	int first = 1;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (c & names[i].bit) {
			printf("%s%s", first ? "" : ",", names[i].name);
			first = 0;
		}
	}
	if (first)
		printf("none");
}

int main(int argc, char **argv)
{
	const char *dev = "/dev/video0";
	unsigned nframes = 5, width = 640, height = 480;
	uint32_t want_fourcc = V4L2_PIX_FMT_YUYV;
	int json = 0;
	unsigned fps = 0;
	int opt;

	while ((opt = getopt(argc, argv, "d:n:W:H:f:r:jh")) != -1) {
		switch (opt) {
		case 'd': dev = optarg; break;
		case 'n': nframes = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'W': width = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'H': height = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'f':
			if (strlen(optarg) != 4) {
				fprintf(stderr, "v4l-probe: FOURCC must be 4 characters\n");
				return 1;
			}
			want_fourcc = v4l2_fourcc(optarg[0], optarg[1], optarg[2], optarg[3]);
			break;
		case 'r': fps = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'j': json = 1; break;
		default: usage(argv[0]); return opt == 'h' ? 0 : 1;
		}
	}

	int fd = open(dev, O_RDWR | O_NONBLOCK);
	if (fd < 0) {
		fprintf(stderr, "v4l-probe: open %s: %s\n", dev, strerror(errno));
		return 1;
	}

	/* --- what the driver is --- */
	struct v4l2_capability cap;
	memset(&cap, 0, sizeof(cap));
	if (xioctl(fd, VIDIOC_QUERYCAP, &cap) < 0) {
		fprintf(stderr, "v4l-probe: VIDIOC_QUERYCAP: %s\n", strerror(errno));
		return 1;
	}
	uint32_t dcaps = (cap.capabilities & V4L2_CAP_DEVICE_CAPS) ? cap.device_caps
								    : cap.capabilities;
	printf("v4l-probe: device %s driver=%s card=\"%s\" bus=%s version=%u.%u.%u\n",
	       dev, cap.driver, cap.card, cap.bus_info, (cap.version >> 16) & 0xff,
	       (cap.version >> 8) & 0xff, cap.version & 0xff);
	printf("v4l-probe: device_caps=0x%08x (", dcaps);
	print_caps(dcaps);
	printf(")\n");
	if (!(dcaps & V4L2_CAP_VIDEO_CAPTURE)) {
		fprintf(stderr,
			"v4l-probe: %s is not a single-planar video capture device%s\n", dev,
			(dcaps & V4L2_CAP_VIDEO_CAPTURE_MPLANE) ? " (it is multi-planar)" : "");
		return 1;
	}
	if (!(dcaps & V4L2_CAP_STREAMING)) {
		fprintf(stderr, "v4l-probe: %s does not support streaming I/O\n", dev);
		return 1;
	}

	/* --- inputs --- */
	int cur_input = -1;
	if (xioctl(fd, VIDIOC_G_INPUT, &cur_input) < 0)
		cur_input = -1;
	for (unsigned i = 0;; i++) {
		struct v4l2_input in;
		memset(&in, 0, sizeof(in));
		in.index = i;
		if (xioctl(fd, VIDIOC_ENUMINPUT, &in) < 0)
			break;
		printf("v4l-probe: input %u: \"%s\" type=%s%s\n", i, in.name,
		       in.type == V4L2_INPUT_TYPE_CAMERA ? "camera" : "tuner",
		       (int)i == cur_input ? " (current)" : "");
	}

	/* --- formats and frame sizes --- */
	int have_wanted = 0;
	unsigned nformats = 0;
	char prev_sizes[160] = "\x01"; /* never equal to a real list */
	for (unsigned i = 0;; i++) {
		struct v4l2_fmtdesc fd_desc;
		memset(&fd_desc, 0, sizeof(fd_desc));
		fd_desc.index = i;
		fd_desc.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
		if (xioctl(fd, VIDIOC_ENUM_FMT, &fd_desc) < 0)
			break;
		char fcc[8];
		fourcc_str(fd_desc.pixelformat, fcc);
		if (fd_desc.pixelformat == want_fourcc)
			have_wanted = 1;
		printf("v4l-probe: format %u: %s \"%s\"%s", i, fcc, fd_desc.description,
		       (fd_desc.flags & V4L2_FMT_FLAG_COMPRESSED) ? " compressed" : "");
		/* up to 8 discrete sizes (or the stepwise range); printed only when
		 * they differ from the previous format's (vivid lists 80+ formats) */
		char sizes[160] = "";
		size_t len = 0;
		struct v4l2_frmsizeenum fs;
		memset(&fs, 0, sizeof(fs));
		fs.pixel_format = fd_desc.pixelformat;
		fs.index = 0;
		if (xioctl(fd, VIDIOC_ENUM_FRAMESIZES, &fs) == 0) {
			if (fs.type == V4L2_FRMSIZE_TYPE_DISCRETE) {
				for (unsigned k = 0; k < 8 && len < sizeof(sizes) - 24; k++) {
					fs.index = k;
					if (xioctl(fd, VIDIOC_ENUM_FRAMESIZES, &fs) < 0)
						break;
					len += (size_t)snprintf(sizes + len, sizeof(sizes) - len,
								" %ux%u", fs.discrete.width,
								fs.discrete.height);
				}
			} else {
				snprintf(sizes, sizeof(sizes), " %ux%u..%ux%u",
					 fs.stepwise.min_width, fs.stepwise.min_height,
					 fs.stepwise.max_width, fs.stepwise.max_height);
			}
		}
		if (strcmp(sizes, prev_sizes) != 0) {
			printf(" sizes:%s", sizes[0] ? sizes : " (not enumerated)");
			memcpy(prev_sizes, sizes, sizeof(sizes));
		}
		printf("\n");
		nformats++;
	}
	printf("v4l-probe: %u capture formats (sizes shown where they change)\n", nformats);
	char want_str[8];
	fourcc_str(want_fourcc, want_str);
	if (!have_wanted)
		printf("v4l-probe: warning: %s not listed by VIDIOC_ENUM_FMT, trying anyway\n",
		       want_str);

	/* --- set the format --- */
	struct v4l2_format fmt;
	memset(&fmt, 0, sizeof(fmt));
	fmt.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
	fmt.fmt.pix.width = width;
	fmt.fmt.pix.height = height;
	fmt.fmt.pix.pixelformat = want_fourcc;
	fmt.fmt.pix.field = V4L2_FIELD_NONE;
	if (xioctl(fd, VIDIOC_S_FMT, &fmt) < 0) {
		fprintf(stderr, "v4l-probe: VIDIOC_S_FMT %s %ux%u: %s\n", want_str, width,
			height, strerror(errno));
		return 1;
	}
	char got_str[8];
	fourcc_str(fmt.fmt.pix.pixelformat, got_str);
	printf("v4l-probe: format set: %s %ux%u bytesperline=%u sizeimage=%u field=%u\n",
	       got_str, fmt.fmt.pix.width, fmt.fmt.pix.height, fmt.fmt.pix.bytesperline,
	       fmt.fmt.pix.sizeimage, fmt.fmt.pix.field);
	if (fmt.fmt.pix.pixelformat != want_fourcc || fmt.fmt.pix.width != width ||
	    fmt.fmt.pix.height != height)
		printf("v4l-probe: note: driver adjusted the request %s %ux%u\n", want_str,
		       width, height);
	int is_yuyv = fmt.fmt.pix.pixelformat == V4L2_PIX_FMT_YUYV;

	/* frame intervals offered for the chosen format and size */
	struct v4l2_frmivalenum fi;
	memset(&fi, 0, sizeof(fi));
	fi.pixel_format = fmt.fmt.pix.pixelformat;
	fi.width = fmt.fmt.pix.width;
	fi.height = fmt.fmt.pix.height;
	if (xioctl(fd, VIDIOC_ENUM_FRAMEINTERVALS, &fi) == 0) {
		printf("v4l-probe: frame intervals for %s %ux%u:", got_str, fi.width, fi.height);
		if (fi.type == V4L2_FRMIVAL_TYPE_DISCRETE) {
			for (unsigned k = 0; k < 16; k++) {
				fi.index = k;
				if (xioctl(fd, VIDIOC_ENUM_FRAMEINTERVALS, &fi) < 0)
					break;
				printf(" %u/%u", fi.discrete.numerator, fi.discrete.denominator);
			}
		} else {
			printf(" %u/%u..%u/%u", fi.stepwise.min.numerator,
			       fi.stepwise.min.denominator, fi.stepwise.max.numerator,
			       fi.stepwise.max.denominator);
		}
		printf(" s\n");
	}

	struct v4l2_streamparm parm;
	memset(&parm, 0, sizeof(parm));
	parm.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
	if (fps) {
		parm.parm.capture.timeperframe.numerator = 1;
		parm.parm.capture.timeperframe.denominator = fps;
		if (xioctl(fd, VIDIOC_S_PARM, &parm) < 0)
			printf("v4l-probe: warning: VIDIOC_S_PARM 1/%u s: %s\n", fps, strerror(errno));
		memset(&parm, 0, sizeof(parm));
		parm.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
	}
	if (xioctl(fd, VIDIOC_G_PARM, &parm) == 0 &&
	    parm.parm.capture.timeperframe.denominator != 0)
		printf("v4l-probe: frame interval %u/%u s\n",
		       parm.parm.capture.timeperframe.numerator,
		       parm.parm.capture.timeperframe.denominator);

	/* --- MMAP buffers --- */
	struct v4l2_requestbuffers req;
	memset(&req, 0, sizeof(req));
	req.count = 4;
	req.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
	req.memory = V4L2_MEMORY_MMAP;
	if (xioctl(fd, VIDIOC_REQBUFS, &req) < 0) {
		fprintf(stderr, "v4l-probe: VIDIOC_REQBUFS: %s\n", strerror(errno));
		return 1;
	}
	if (req.count < 2 || req.count > MAX_BUFS) {
		fprintf(stderr, "v4l-probe: driver granted %u buffers\n", req.count);
		return 1;
	}
	struct buffer bufs[MAX_BUFS];
	for (unsigned i = 0; i < req.count; i++) {
		struct v4l2_buffer b;
		memset(&b, 0, sizeof(b));
		b.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
		b.memory = V4L2_MEMORY_MMAP;
		b.index = i;
		if (xioctl(fd, VIDIOC_QUERYBUF, &b) < 0) {
			fprintf(stderr, "v4l-probe: VIDIOC_QUERYBUF %u: %s\n", i, strerror(errno));
			return 1;
		}
		bufs[i].length = b.length;
		bufs[i].start = mmap(NULL, b.length, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
				     b.m.offset);
		if (bufs[i].start == MAP_FAILED) {
			fprintf(stderr, "v4l-probe: mmap buffer %u: %s\n", i, strerror(errno));
			return 1;
		}
		if (xioctl(fd, VIDIOC_QBUF, &b) < 0) {
			fprintf(stderr, "v4l-probe: VIDIOC_QBUF %u: %s\n", i, strerror(errno));
			return 1;
		}
	}
	printf("v4l-probe: %u MMAP buffers of %zu bytes\n", req.count, bufs[0].length);

	enum v4l2_buf_type type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
	if (xioctl(fd, VIDIOC_STREAMON, &type) < 0) {
		fprintf(stderr, "v4l-probe: VIDIOC_STREAMON: %s\n", strerror(errno));
		return 1;
	}

	double t0 = now_s();
	unsigned got = 0;
	int rc = 0;
	while (got < nframes) {
		fd_set fds;
		FD_ZERO(&fds);
		FD_SET(fd, &fds);
		struct timeval tv = { .tv_sec = 5, .tv_usec = 0 };
		int r = select(fd + 1, &fds, NULL, NULL, &tv);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			fprintf(stderr, "v4l-probe: %s waiting for frame %u\n",
				r == 0 ? "timeout (5 s)" : strerror(errno), got);
			rc = 1;
			break;
		}
		struct v4l2_buffer b;
		memset(&b, 0, sizeof(b));
		b.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
		b.memory = V4L2_MEMORY_MMAP;
		if (xioctl(fd, VIDIOC_DQBUF, &b) < 0) {
			if (errno == EAGAIN)
				continue;
			fprintf(stderr, "v4l-probe: VIDIOC_DQBUF: %s\n", strerror(errno));
			rc = 1;
			break;
		}
		double t = now_s() - t0;
		const uint8_t *p = bufs[b.index].start;
		size_t n = b.bytesused ? b.bytesused : bufs[b.index].length;
		/* FNV-1a over the frame; luma mean for YUYV (every other byte) */
		uint32_t h = 2166136261u;
		uint64_t ysum = 0;
		size_t ycount = 0;
		for (size_t k = 0; k < n; k++) {
			h = (h ^ p[k]) * 16777619u;
			if (is_yuyv && (k & 1) == 0) {
				ysum += p[k];
				ycount++;
			}
		}
		double ymean = ycount ? (double)ysum / (double)ycount : -1.0;
		double ts = (double)b.timestamp.tv_sec + (double)b.timestamp.tv_usec / 1e6;
		if (json)
			printf("{\"frame\":%u,\"sequence\":%u,\"bytesused\":%u,\"t_s\":%.3f,"
			       "\"timestamp\":%.6f,\"y_mean\":%.2f,\"fnv1a\":\"%08x\"}\n",
			       got, b.sequence, b.bytesused, t, ts, ymean, h);
		else
			printf("v4l-probe: frame %u seq=%u bytes=%u t=%.3fs ts=%.6f y_mean=%.2f "
			       "fnv1a=%08x\n",
			       got, b.sequence, b.bytesused, t, ts, ymean, h);
		fflush(stdout);
		got++;
		if (xioctl(fd, VIDIOC_QBUF, &b) < 0) {
			fprintf(stderr, "v4l-probe: VIDIOC_QBUF: %s\n", strerror(errno));
			rc = 1;
			break;
		}
	}
	double total = now_s() - t0;
	xioctl(fd, VIDIOC_STREAMOFF, &type);
	for (unsigned i = 0; i < req.count; i++)
		munmap(bufs[i].start, bufs[i].length);
	close(fd);
	printf("v4l-probe: captured %u/%u frames %s %ux%u in %.3f s (%.1f fps)\n", got,
	       nframes, got_str, fmt.fmt.pix.width, fmt.fmt.pix.height, total,
	       total > 0 ? got / total : 0.0);
	return rc;
}
