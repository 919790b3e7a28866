# A FUSE file system that answers nothing: a dead NFS mount in a few lines, no package needed.
# Usage: python3 hung_mount.py MOUNTPOINT. Mounts (root only), prints "mounted", then holds the
# /dev/fuse descriptor and never reads it, so every call that reaches the file system (statfs,
# readdir, stat below the root) blocks in the kernel until this process dies; then the kernel
# aborts the connection and those calls fail with ENOTCONN.
import ctypes, os, signal, sys

mountpoint = sys.argv[1].encode()
fd = os.open("/dev/fuse", os.O_RDWR)
libc = ctypes.CDLL(None, use_errno=True)
opts = f"fd={fd},rootmode=40000,user_id=0,group_id=0".encode()
if libc.mount(b"backwatch-hung", mountpoint, b"fuse.backwatch-hung", 0, opts) != 0:
    err = ctypes.get_errno()
    sys.exit(f"mount {sys.argv[1]}: {os.strerror(err)}")
print("mounted", flush=True)
while True:
    signal.pause()
