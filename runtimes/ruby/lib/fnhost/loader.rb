# frozen_string_literal: true

require_relative 'errors'
require_relative 'gems'

module FnHost
  # The resolved handler: Lambda calls it as target.method(event:, context:).
  Handler = Struct.new(:target, :method_name) do
    def call(event, context)
      target.__send__(method_name, event: event, context: context)
    end
  end

  # Turns a Lambda Ruby handler string into a Handler, or raises InitFailure saying what to fix.
  #
  #   function.handler                     top-level `def handler(event:, context:)` in function.rb
  #   lib/function.handler                 the same, in a subdirectory of the code
  #   function.Handler.process             class method `def self.process(event:, context:)`
  #   function.Module::Handler.process     the same, in a namespace
  class Loader
    # Mirrors handler_pattern in runtime.toml. A file part has no dots (Lambda splits on them).
    PATTERN = %r{\A
      (?<file>[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*)
      \.
      (?:(?<const>[A-Z][A-Za-z0-9_]*(?:::[A-Z][A-Za-z0-9_]*)*)\.)?
      (?<method>[A-Za-z_][A-Za-z0-9_]*[?!]?)
    \z}x.freeze

    SHAPES = 'file.method, file.Class.method or file.Module::Class.method ' \
             '(e.g. function.handler, lib/function.Handler.process)'

    def initialize(handler, code_dir)
      @handler = handler.to_s
      @code_dir = code_dir
    end

    def load
      match = PATTERN.match(@handler)
      unless match
        raise InitFailure.new('Runtime.MalformedHandlerName',
                              "Bad handler '#{@handler}': expected #{SHAPES}")
      end

      @file = "#{match[:file]}.rb"
      path = File.join(@code_dir, @file)
      unless File.file?(path)
        raise InitFailure.new('Runtime.ImportModuleError',
                              "Cannot load handler '#{@handler}': no file #{@file} in " \
                              "#{@code_dir}#{nearby(path)}")
      end

      Gems.setup(@code_dir)
      # What existed before the user's code, so a method inherited from Kernel or from a library
      # (exit, puts, to_json) is never mistaken for the handler.
      @builtin = Object.ancestors - [Object]
      @methods_before = top_level_methods
      require_user_file(path)
      match[:const] ? class_method(match[:const], match[:method].to_sym) : top_level(match[:method].to_sym)
    end

    private

    def require_user_file(path)
      require path
    rescue SyntaxError => e
      raise InitFailure.new('Runtime.UserCodeSyntaxError',
                            "Syntax error in #{@file} (handler '#{@handler}'): #{Errors.message_of(e)}", e)
    rescue LoadError => e
      raise InitFailure.new('Runtime.ImportModuleError',
                            "Error loading #{@file} (handler '#{@handler}'): #{Errors.message_of(e)}", e)
    rescue SystemExit, SignalException
      raise
    rescue Exception => e
      raise InitFailure.new('Runtime.InitError',
                            "Init error in #{@file} (handler '#{@handler}'): " \
                            "#{Errors.type_name(e)}: #{Errors.message_of(e)}", e)
    end

    def top_level(name)
      if (Object.private_method_defined?(name) || Object.method_defined?(name)) &&
         !@builtin.include?(Object.instance_method(name).owner)
        return Handler.new(TOPLEVEL_BINDING.receiver, name)
      end

      defined = top_level_methods - @methods_before
      found = if defined.empty?
                'it defines no top-level methods'
              else
                "top-level methods it defines: #{list(defined)}"
              end
      raise InitFailure.new('Runtime.HandlerNotFound',
                            "Handler '#{@handler}' not found: #{@file} loaded, but has no top-level " \
                            "method '#{name}' (#{found})")
    end

    def class_method(const, name)
      target = begin
        Object.const_get(const)
      rescue NameError
        raise InitFailure.new('Runtime.HandlerNotFound',
                              "Handler '#{@handler}' not found: #{@file} loaded, but defines no " \
                              "constant #{const}")
      end
      ignored = @builtin + [Module, Class, Object]
      if target.respond_to?(name, true) && !ignored.include?(target.method(name).owner)
        return Handler.new(target, name)
      end

      raise InitFailure.new('Runtime.HandlerNotFound',
                            "Handler '#{@handler}' not found: #{const} has no class method '#{name}'" \
                            "#{class_method_hint(target, name)}")
    end

    def class_method_hint(target, name)
      if target.is_a?(Module) && (target.method_defined?(name) || target.private_method_defined?(name))
        " (it has an instance method '#{name}'; Lambda calls class methods: " \
          "define it as `def self.#{name}(event:, context:)`)"
      else
        own = target.singleton_methods
        own.empty? ? ' (it has no class methods)' : " (its class methods: #{list(own)})"
      end
    end

    def top_level_methods
      Object.private_instance_methods(false) + Object.public_instance_methods(false)
    end

    # The .rb files beside the one looked for, so a typo is obvious.
    def nearby(path)
      dir = File.dirname(path)
      return " (no directory #{File.dirname(@file)} there)" unless File.directory?(dir)

      files = Dir.children(dir).select { |f| f.end_with?('.rb') }.sort
      files.empty? ? " (no .rb files in #{dir})" : " (.rb files there: #{list(files)})"
    end

    def list(items)
      items = items.map(&:to_s).sort
      items.size > 20 ? "#{items.first(20).join(', ')}, …" : items.join(', ')
    end
  end
end
