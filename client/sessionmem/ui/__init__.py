"""The live web view (`sessionmem ui`): needs the extra, pip install 'sessionmem[ui]'."""
