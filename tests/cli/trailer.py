"""trailer.py -- read or rewrite an .mpuc stream's trailer, as a forger would:
the new trailer gets a correct record check (XXH3-64 through xxhsum), so
only what is cryptographic can tell it apart (spec/mpuc.md 9, 9.1).

  python3 trailer.py show FILE            the trailer JSON
  python3 trailer.py prefix FILE          hex BLAKE2b-256 of the bytes before the trailer
  python3 trailer.py edit FILE CODE       runs CODE with `t` the trailer object, writes it back
"""
import hashlib
import json
import struct
import subprocess
import sys


def split(data):
    off = struct.unpack('<Q', data[-24:-16])[0]
    payload = data[off + 8:]
    assert payload[0:1] == b'Z' and data[-16:-8] == b'MPUC-END'
    n = struct.unpack('<I', payload[1:5])[0]
    return off, json.loads(payload[5:5 + n])


def xxh3_64(b):
    out = subprocess.run(['xxhsum', '-H3', '-'], input=b, capture_output=True, check=True).stdout.decode()
    return int(out.split('=')[1].strip(), 16)


def write(path, data, off, t):
    j = json.dumps(t, separators=(',', ':'), sort_keys=True, ensure_ascii=False).encode()
    body = b'Z' + struct.pack('<I', len(j)) + j + struct.pack('<Q', off) + b'MPUC-END'
    payload = body + struct.pack('<Q', xxh3_64(body))
    frame = struct.pack('<II', 0x184D2A5B, len(payload)) + payload
    open(path, 'wb').write(data[:off] + frame)


def main():
    cmd, path = sys.argv[1], sys.argv[2]
    data = open(path, 'rb').read()
    off, t = split(data)
    if cmd == 'show':
        print(json.dumps(t))
    elif cmd == 'prefix':
        print(hashlib.blake2b(data[:off], digest_size=32).hexdigest())
    elif cmd == 'edit':
        exec(sys.argv[3], {'t': t, 'json': json})
        write(path, data, off, t)


if __name__ == '__main__':
    main()
