"""todo-conformance: the todo service's contract checked from outside, against any base
URL, with a result for every requirement id."""
