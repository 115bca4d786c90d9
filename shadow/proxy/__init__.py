"""The request path: the engines that forward every client request unchanged (raw, the
default, and the aiohttp fallback), the capture of matched reads, and the forwarding
helpers both engines share. Nothing here waits on the shadow side."""
