def softmax(x, dim=-1):
    raise NotImplementedError
