#!/usr/bin/env python3
"""Seeds the fuzz corpora with the real frames of the golden fixtures.

Writes corpus/client_frame/* (client frames, handshakes included), corpus/server_frame/* (a
server frame prefixed with the op code index byte the target reads) and corpus/frame_decoder/*
(each fixture's client stream with length prefixes). Run from fuzz/: ./seed_corpus.py
"""
import hashlib
import pathlib
import struct

GOLDEN = pathlib.Path(__file__).resolve().parent.parent / "protocol" / "tests" / "golden"
CORPUS = pathlib.Path(__file__).resolve().parent / "corpus"


def write(target, data):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)


def main():
    for fixture in sorted(GOLDEN.glob("*.txt")):
        stream = b""
        for line in fixture.read_text().splitlines():
            if line.startswith("> "):
                frame = bytes.fromhex(line[2:].strip())
                write("client_frame", frame)
                stream += struct.pack(">i", len(frame)) + frame
            elif line.startswith("< "):
                frame = bytes.fromhex(line[2:].strip())
                # Byte 0 picks the op code; 0 stands for any (the corpus mutates it anyway).
                write("server_frame", b"\x00" + frame)
        write("frame_decoder", b"\x10" + stream)


if __name__ == "__main__":
    main()
