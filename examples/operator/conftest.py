import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # import greeter.py like an installed package
