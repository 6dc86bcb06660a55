"""Run inside the tritonclient environment: parse a Triton config.pbtxt with the ModelConfig protobuf
that tritonclient ships, and print it as JSON (a parse error exits non-zero with protobuf's message).

Usage: python triton_config_check.py DIR/NAME/config.pbtxt
"""

import json
import sys

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

with open(sys.argv[1], encoding="utf-8") as f:
    config = text_format.Parse(f.read(), model_config_pb2.ModelConfig())
print(json.dumps(json_format.MessageToDict(config, preserving_proto_field_name=True)))
